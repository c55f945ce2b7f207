import { describe, expect, it } from 'vitest';
import { SwarmBoard, boardKey } from './swarm-board';
import { emptyHave, setPiece } from './swarm-record';

const KEY = boardKey('ubuntu-24.04.qcow2', 'a'.repeat(64));

function copyOn(node: string, ...pieces: number[]) {
  const have = emptyHave(16);
  for (const piece of pieces) setPiece(have, piece);
  const reading = new Set<number>();
  return { node, attemptId: `attempt-${node}`, partialPath: `/cache/${node}/tmp/x.part`, have, reading };
}

describe('the copies in progress of this process (SwarmBoard)', () => {
  it('shows each copy the others of its image', () => {
    const board = new SwarmBoard();
    const b = board.join(KEY, copyOn('node-b'));
    expect(board.others(KEY, b.entry)).toEqual([]);
    const c = board.join(KEY, copyOn('node-c', 1));
    const d = board.join(KEY, copyOn('node-d'));
    expect(board.others(KEY, b.entry)).toEqual([c.entry, d.entry]);
    expect(board.others(KEY, c.entry).map((e) => e.node)).toEqual(['node-b', 'node-d']);
    expect(c.entry).toMatchObject({ ...copyOn('node-c', 1), reading: new Set(), left: false });
  });

  it('counts the others that have a piece verified or are reading it, never the copy asking', () => {
    const board = new SwarmBoard();
    const b = board.join(KEY, copyOn('node-b', 0, 1, 2));
    const c = board.join(KEY, copyOn('node-c', 1));
    const d = board.join(KEY, copyOn('node-d', 1, 9));
    d.entry.reading.add(2);
    c.entry.reading.add(3);
    expect([0, 1, 2, 3, 4, 9].map((i) => board.holdersOf(KEY, b.entry, i))).toEqual([0, 2, 1, 1, 0, 1]);
    expect([0, 1, 2, 3, 4, 9].map((i) => board.holdersOf(KEY, c.entry, i))).toEqual([1, 2, 2, 0, 0, 1]);
    // The bitmap is the copy's own (its record's): a piece written later counts at once.
    setPiece(d.entry.have, 4);
    expect(board.holdersOf(KEY, b.entry, 4)).toBe(1);
    // A piece read and then verified counts once.
    c.entry.reading.delete(3);
    setPiece(c.entry.have, 3);
    d.entry.reading.add(9);
    expect(board.holdersOf(KEY, b.entry, 3)).toBe(1);
    expect(board.holdersOf(KEY, b.entry, 9)).toBe(1);
  });

  it('tells whether another copy is reading a piece now, not counting a verified one or the copy asking', () => {
    const board = new SwarmBoard();
    const b = board.join(KEY, copyOn('node-b'));
    const c = board.join(KEY, copyOn('node-c', 1));
    b.entry.reading.add(2);
    c.entry.reading.add(3);
    expect([1, 2, 3].map((i) => board.readingElsewhere(KEY, b.entry, i))).toEqual([false, false, true]);
    expect([1, 2, 3].map((i) => board.readingElsewhere(KEY, c.entry, i))).toEqual([false, true, false]);
    c.entry.reading.delete(3);
    expect(board.readingElsewhere(KEY, b.entry, 3)).toBe(false);
    expect(board.readingElsewhere(boardKey('debian-12.qcow2', 'a'.repeat(64)), c.entry, 2)).toBe(false);
  });

  it('forgets a copy that left, and marks it as left', () => {
    const board = new SwarmBoard();
    const b = board.join(KEY, copyOn('node-b'));
    const c = board.join(KEY, copyOn('node-c', 1));
    c.leave();
    expect(c.entry.left).toBe(true);
    expect(board.others(KEY, b.entry)).toEqual([]);
    expect(board.holdersOf(KEY, b.entry, 1)).toBe(0);
    // The last one to leave takes the image off the board; a copy joining later starts it again.
    b.leave();
    const d = board.join(KEY, copyOn('node-d'));
    expect(board.others(KEY, d.entry)).toEqual([]);
    const e = board.join(KEY, copyOn('node-e', 1));
    expect(board.others(KEY, d.entry)).toEqual([e.entry]);
    expect(board.holdersOf(KEY, d.entry, 1)).toBe(1);
    // Leaving twice, or after the image was emptied and joined again, takes nobody else off.
    b.leave();
    c.leave();
    expect(board.others(KEY, d.entry)).toEqual([e.entry]);
  });

  it('keeps images apart, and two versions (sha256) of one image id', () => {
    const board = new SwarmBoard();
    const other = boardKey('debian-12.qcow2', 'a'.repeat(64));
    const newer = boardKey('ubuntu-24.04.qcow2', 'b'.repeat(64));
    expect(new Set([KEY, other, newer]).size).toBe(3);
    const b = board.join(KEY, copyOn('node-b'));
    board.join(other, copyOn('node-c', 1));
    const d = board.join(newer, copyOn('node-d', 1));
    d.entry.reading.add(2);
    expect(board.others(KEY, b.entry)).toEqual([]);
    expect(board.holdersOf(KEY, b.entry, 1)).toBe(0);
    expect(board.holdersOf(KEY, b.entry, 2)).toBe(0);
    expect(board.others(newer, b.entry)).toEqual([d.entry]);
    expect(board.others('unknown', b.entry)).toEqual([]);
    expect(board.holdersOf('unknown', b.entry, 1)).toBe(0);
  });
});
