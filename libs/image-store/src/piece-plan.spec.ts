import { describe, expect, it } from 'vitest';
import {
  type PieceChoice,
  createPiecePlan,
  dropHolder,
  isComplete,
  othersReading,
  pieceDone,
  takePiece,
} from './piece-plan';

describe('piece plan of a copy from several holders', () => {
  it('gives each holder the lowest piece nobody has or reads, so the verified prefix grows from the front', () => {
    const plan = createPiecePlan(5);
    expect([takePiece(plan, 'a'), takePiece(plan, 'b'), takePiece(plan, 'c')]).toEqual([0, 1, 2]);
    pieceDone(plan, 1);
    expect(plan.donePrefix).toBe(0); // piece 0 still being read: the prefix waits for it
    pieceDone(plan, 0);
    expect(plan.donePrefix).toBe(2);
    expect(takePiece(plan, 'b')).toBe(3);
    expect(takePiece(plan, 'a')).toBe(4);
    expect(takePiece(plan, 'a')).toBeUndefined();
    expect(othersReading(plan)).toBe(true);
    for (const piece of [2, 3, 4]) pieceDone(plan, piece);
    expect(isComplete(plan)).toBe(true);
    expect(othersReading(plan)).toBe(false);
  });

  it('never gives one piece to two holders at once', () => {
    const plan = createPiecePlan(3);
    const taken = ['a', 'b', 'c', 'd'].map((h) => takePiece(plan, h));
    expect(taken).toEqual([0, 1, 2, undefined]);
    expect(plan.readBy).toEqual(['a', 'b', 'c']);
  });

  it('puts a dropped holder’s piece back for the others and never gives it another', () => {
    const plan = createPiecePlan(3);
    expect(takePiece(plan, 'a')).toBe(0);
    expect(takePiece(plan, 'b')).toBe(1);
    dropHolder(plan, 'a', 'lock lost');
    expect(plan.status).toEqual(['missing', 'reading', 'missing']);
    expect(takePiece(plan, 'a')).toBeUndefined();
    expect(takePiece(plan, 'c')).toBe(0);
    expect(plan.dropped).toEqual(new Map([['a', 'lock lost']]));
    // The first reason stays: a dropped holder is named for what dropped it.
    dropHolder(plan, 'a', 'later');
    expect(plan.dropped.get('a')).toBe('lock lost');
  });

  it('starts after a resumed prefix', () => {
    const plan = createPiecePlan(4, 2);
    expect(plan.donePrefix).toBe(2);
    expect(takePiece(plan, 'a')).toBe(2);
    expect(createPiecePlan(0).donePrefix).toBe(0);
    expect(isComplete(createPiecePlan(0))).toBe(true);
  });
});

describe('piece plan of a copy that also reads from copies in progress (PieceChoice)', () => {
  /** A choice from per-piece rarities; every piece held unless `held` says otherwise. */
  const choiceOf = (rarities: number[], offset: number, extra: Partial<PieceChoice> = {}): PieceChoice => ({
    rarity: (index) => rarities[index]!,
    offset,
    ...extra,
  });

  it('takes the rarest missing piece first', () => {
    const plan = createPiecePlan(6);
    const choice = choiceOf([3, 2, 1, 2, 3, 4], 0);
    expect(takePiece(plan, 'a', choice)).toBe(2);
    expect(takePiece(plan, 'a', choice)).toBe(1);
    expect(takePiece(plan, 'b', choice)).toBe(3);
    pieceDone(plan, 1);
    expect(takePiece(plan, 'a', choice)).toBe(0);
    expect(takePiece(plan, 'a', choice)).toBe(4);
    expect(takePiece(plan, 'a', choice)).toBe(5);
    expect(takePiece(plan, 'a', choice)).toBeUndefined();
    expect(plan.readBy).toEqual(['a', undefined, 'a', 'b', 'a', 'a']);
  });

  it('among equally rare pieces, takes the first from the offset on, wrapping around', () => {
    const plan = createPiecePlan(5);
    const choice = choiceOf([1, 1, 1, 1, 1], 3);
    expect([0, 1, 2, 3, 4].map(() => takePiece(plan, 'a', choice))).toEqual([3, 4, 0, 1, 2]);
    // A rarer piece before the offset still comes first.
    const other = createPiecePlan(5);
    expect(takePiece(other, 'a', choiceOf([2, 1, 2, 2, 2], 3))).toBe(1);
    expect(takePiece(other, 'a', choiceOf([2, 1, 2, 2, 2], 3))).toBe(3);
  });

  it('gives a holder only pieces it has', () => {
    const plan = createPiecePlan(6);
    const held = new Set([1, 4]);
    const choice = choiceOf([0, 5, 0, 0, 5, 0], 0, { has: (index) => held.has(index) });
    expect(takePiece(plan, 'peer', choice)).toBe(1);
    expect(takePiece(plan, 'peer', choice)).toBe(4);
    expect(takePiece(plan, 'peer', choice)).toBeUndefined();
    expect(plan.status).toEqual(['missing', 'reading', 'missing', 'missing', 'reading', 'missing']);
  });

  it('never gives a holder the pieces `skip` names, rare or not', () => {
    const plan = createPiecePlan(5);
    // A verified source leaves to the copies in progress the pieces they hold (here 0, 1 and 4).
    const held = new Set([0, 1, 4]);
    const choice = choiceOf([1, 0, 2, 0, 1], 2, { skip: (index) => held.has(index) });
    expect(takePiece(plan, 'source', choice)).toBe(3);
    expect(takePiece(plan, 'source', choice)).toBe(2);
    expect(takePiece(plan, 'source', choice)).toBeUndefined();
    expect(plan.status).toEqual(['missing', 'missing', 'reading', 'reading', 'missing']);
    expect(takePiece(plan, 'peer', choiceOf([1, 0, 2, 0, 1], 2))).toBe(1);
  });

  it('gives nothing when nothing is missing, and nothing to a dropped holder', () => {
    const plan = createPiecePlan(3, 2);
    const choice = choiceOf([0, 0, 0], 0);
    expect(takePiece(plan, 'a', choice)).toBe(2);
    expect(takePiece(plan, 'b', choice)).toBeUndefined();
    dropHolder(plan, 'a', 'read failed');
    expect(takePiece(plan, 'a', choice)).toBeUndefined();
    expect(takePiece(plan, 'b', choice)).toBe(2);
    expect(takePiece(createPiecePlan(0), 'a', choice)).toBeUndefined();
  });
});
