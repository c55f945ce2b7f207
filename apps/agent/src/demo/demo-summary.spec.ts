import { describe, expect, it } from 'vitest';
import type { CopyResult } from '@app/contracts';
import { demoPlan, expectedDestinations } from './demo-plan';
import { summarize } from './demo-summary';

const result = (status: CopyResult['status'], bytes: number, lockWaitMs: number): CopyResult => ({
  v: 1,
  type: 'result',
  requestId: 'r',
  status,
  bytes,
  attempt: 1,
  durations: { totalMs: 10, lockWaitMs },
  conductorId: 'c',
  at: '2025-01-31T12:00:00Z',
  ...(status === 'failed' ? { reason: 'SOURCE_MISSING' as const, retryable: false } : {}),
});

describe('demo plan and summary', () => {
  it('plans a fan-out to every other node, a duplicate, two disjoint pairs and an image from the origin', () => {
    const plan = demoPlan(256, 'demo-x');
    expect(plan.nodes).toHaveLength(6);
    expect(plan.images[0]!.bytes).toBe(256 * 1024 * 1024);
    expect(plan.copies.filter((c) => c.kind === 'fan-out').map((c) => c.request.source)).toEqual([
      undefined,
      undefined,
      undefined,
      undefined,
      undefined,
    ]);
    expect(new Set(plan.copies.map((c) => c.request.requestId)).size).toBe(plan.copies.length);
    // Ten from the copies, five more from the pre-cache job onto all six nodes (one is a copy's destination).
    expect(expectedDestinations(plan)).toHaveLength(15);
    const fromOrigin = plan.images.filter((i) => i.seedNode === undefined).map((i) => i.imageId);
    expect(plan.copies.filter((c) => c.kind === 'origin').map((c) => c.request.imageId)).toEqual([
      ...fromOrigin,
      ...fromOrigin,
    ]);
  });

  it('counts coalesced answers apart and does not count their bytes twice', () => {
    const plan = demoPlan(1, 't');
    const [a, b, c, d] = plan.copies;
    const summary = summarize(
      [
        { copy: a!, result: result('completed', 100, 5) },
        { copy: b!, result: result('completed', 100, 7), coalesced: true },
        { copy: c!, result: result('already-present', 0, 1) },
        { copy: d!, error: 'timed out' },
      ],
      1000,
    );
    expect(summary).toMatchObject({
      requested: 4,
      copied: 1,
      coalesced: 1,
      alreadyPresent: 1,
      failed: 0,
      unanswered: 1,
      bytes: 100,
      lockWaitP50: 5,
      lockWaitMax: 7,
    });
  });
});
