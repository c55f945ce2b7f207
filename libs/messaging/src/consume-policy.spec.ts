import { describe, expect, it } from 'vitest';
import { afterHandler, prefetchProblem, resubscribeDelayMs } from './consume-policy';

describe('consume policy', () => {
  it.each([
    [1, undefined],
    [64, undefined],
    [0, 'prefetch must be a positive integer (got 0)'],
    [-1, 'prefetch must be a positive integer (got -1)'],
    [1.5, 'prefetch must be a positive integer (got 1.5)'],
    [Number.NaN, 'prefetch must be a positive integer (got NaN)'],
  ])('a prefetch of %s: %s', (prefetch, problem) => {
    expect(prefetchProblem(prefetch)).toBe(problem);
  });

  it('waits before resubscribing from the first delay (default 1 s), doubling per failure, at most 10 s', () => {
    expect([0, 1, 2, 3, 4, 5].map((failures) => resubscribeDelayMs({}, failures))).toEqual([
      1_000, 2_000, 4_000, 8_000, 10_000, 10_000,
    ]);
    expect([0, 1, 2].map((failures) => resubscribeDelayMs({ resubscribeDelayMs: 50 }, failures))).toEqual([
      50, 100, 200,
    ]);
  });

  it.each<[string, boolean, boolean, 'reject' | 'requeue' | undefined, ReturnType<typeof afterHandler>]>([
    ['settled, returned', true, false, undefined, undefined],
    ['settled, then threw', true, true, 'requeue', { message: 'handler threw after settling the delivery' }],
    [
      'returned unsettled',
      false,
      false,
      undefined,
      { settle: 'reject', message: 'handler returned without settling the delivery' },
    ],
    [
      'threw unsettled',
      false,
      true,
      undefined,
      { settle: 'reject', message: 'handler threw without settling the delivery' },
    ],
    [
      'threw unsettled, requeue policy',
      false,
      true,
      'requeue',
      { settle: 'requeue', message: 'handler threw without settling the delivery' },
    ],
  ])('after the handler: %s', (_name, settled, threw, policy, next) => {
    expect(afterHandler(settled, threw, policy)).toEqual(next);
  });
});
