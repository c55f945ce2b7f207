import { describe, expect, it } from 'vitest';
import { at, fanoutOf, ix } from './fanout.fixture';
import { PIECE_MISSING, PIECE_VERIFIED, type Fetch } from './fanout-view';

describe('Fanout transitions', () => {
  /** s complete; d1 holds 0 and 1; d2 holds nothing, fetches piece 2 from s; d3 has one read slot, busy. */
  const setUp = () => {
    const fanout = fanoutOf([
      at('s'),
      at('d1', { pieces: [0, 1] }),
      at('d2'),
      at('d3', { pieces: [3], readSlots: 1 }),
      at('d4'),
    ]);
    const f = (d: string, s: string, piece: number): Fetch => ({
      destination: ix(fanout, d),
      source: ix(fanout, s),
      piece,
    });
    fanout.start(f('d2', 's', 2));
    fanout.start(f('d4', 'd3', 3));
    return { fanout, f };
  };

  it.each<[string, [string, string, number], string]>([
    ['a piece its source does not hold', ['d2', 'd1', 3], 'it does not hold it verified'],
    ['a piece its source has only in flight', ['d4', 'd2', 2], 'it does not hold it verified'],
    ['a source with no free read slot', ['d2', 'd3', 3], 'no free read slot'],
    ['a piece the destination holds', ['d1', 's', 0], 'it may not fetch it now'],
    ['a piece already in flight to the destination', ['d2', 'd1', 2], 'it does not hold it verified'],
    ['a piece already in flight, from another holder', ['d2', 's', 2], 'it may not fetch it now'],
    ['a complete node as destination', ['s', 'd1', 0], 'it may not fetch it now'],
    ['a node reading from itself', ['d1', 'd1', 0], 'no such pair of nodes'],
  ])('refuses to start a fetch of %s', (_, [d, s, piece], message) => {
    const { fanout, f } = setUp();
    expect(() => fanout.start(f(d, s, piece))).toThrow(message);
  });

  it.each([0, -1, NaN])('refuses an assign budget of %s turns', (budget) => {
    expect(() => setUp().fanout.assign(budget)).toThrow('assign: a budget of at least one turn');
  });

  it('refuses a fetch from a lost source, and ending a fetch that is not in flight', () => {
    const { fanout, f } = setUp();
    fanout.lose(ix(fanout, 'd1'));
    expect(() => fanout.start(f('d2', 'd1', 0))).toThrow('it does not hold it verified');
    expect(() => fanout.verified(f('d2', 's', 1))).toThrow('is not in flight');
  });

  it('a lost holder: its reads in flight are cancelled and planned again elsewhere, the readers keep their pieces', () => {
    const fanout = fanoutOf([at('s'), at('d1', { pieces: [0, 1] }), at('d2', { pieces: [3] })]);
    const d1 = ix(fanout, 'd1');
    const d2 = ix(fanout, 'd2');
    const fromD1: Fetch = { destination: d2, source: d1, piece: 0 };
    fanout.start(fromD1);
    const cancelled = fanout.lose(d1);
    expect(cancelled).toEqual([fromD1]);
    expect(fanout.nodes[d2]!.pieces[0]).toBe(PIECE_MISSING);
    expect(fanout.nodes[d2]!.pieces[3]).toBe(PIECE_VERIFIED);
    expect(fanout.nodes[d1]!.heldCount).toBe(2); // a lost node's verified pieces stay on its disk
    expect(Array.from(fanout.availability)).toEqual([1, 1, 1, 2]);
    const next = fanout.assign();
    expect(next.length).toBeGreaterThan(0);
    expect(next.every((f) => f.source !== d1)).toBe(true);
    expect(next.some((f) => f.destination === d2)).toBe(true);
  });

  it('a piece that fails verification is planned again, and its source is no longer read from', () => {
    const fanout = fanoutOf([at('s'), at('d1', { pieces: [0, 1] }), at('d2'), at('d3')]);
    const [d1, d2, d3] = ['d1', 'd2', 'd3'].map((id) => ix(fanout, id)) as [number, number, number];
    const bad: Fetch = { destination: d2, source: d1, piece: 0 };
    const other: Fetch = { destination: d3, source: d1, piece: 1 };
    fanout.start(bad);
    fanout.start(other);
    const end = fanout.failed(bad);
    expect(end.cancelled).toEqual([other]);
    expect(fanout.nodes[d1]!.lost).toBe(true);
    expect(fanout.nodes[d2]!.pieces[0]).toBe(PIECE_MISSING);
    expect(fanout.nodes[d2]!.missingCount).toBe(4);
    expect(fanout.assign().every((f) => f.source !== d1)).toBe(true);
  });

  it('a lost destination keeps its verified pieces and fetches only the rest once back', () => {
    const fanout = fanoutOf([at('s'), at('d1', { pieces: [1] })]);
    const d1 = ix(fanout, 'd1');
    const first = fanout.assign();
    expect(first.map((f) => f.destination)).toEqual([d1]);
    expect(fanout.lose(d1)).toEqual(first);
    expect(fanout.assign()).toEqual([]);
    fanout.restore(d1);
    const again = fanout.assign();
    expect(again.length).toBeGreaterThan(0);
    expect(again.every((f) => f.piece !== 1)).toBe(true);
    expect(fanout.nodes[d1]!.heldCount).toBe(1);
  });

  it('a destination with every piece verified is a complete holder with free read slots', () => {
    const fanout = fanoutOf([at('s'), at('d1', { pieces: [0, 1, 2] }), at('d2')]);
    const d1 = ix(fanout, 'd1');
    const last: Fetch = { destination: d1, source: ix(fanout, 's'), piece: 3 };
    fanout.start(last);
    expect(fanout.verified(last).destinationComplete).toBe(true);
    expect(fanout.nodes[d1]!.complete).toBe(true);
    expect(fanout.freeComplete.has(d1)).toBe(true);
    expect(fanout.freePartial.has(d1)).toBe(false);
  });
});
