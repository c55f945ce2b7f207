import { describe, expect, it } from 'vitest';
import { createPiecePlan, dropHolder, isComplete, othersReading, pieceDone, takePiece } from './piece-plan';

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
