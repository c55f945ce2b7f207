import { describe, expect, it } from 'vitest';
import { type HeldLock, NodeLockManager } from '@app/locking';
import { AdminHttp } from './support/admin-http';
import { conductorTestbed, errorLines } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { waitFor } from './support/async';

const KiB = 1024;
const BUSY = 'busy.qcow2';
const LONG_AGO = '2000-01-01T00:00:00.000Z';

describe('conductor: x-icc-* headers forged by a requester', () => {
  let held: HeldLock | undefined;
  const bed = conductorTestbed(['node-a', 'node-b', 'node-c'], {
    cleanup: async () => {
      await held?.release();
      held = undefined;
    },
  });
  const pool = bed.pool;

  it('never believes them: first attempt, first seen now, MAX_ATTEMPTS real tries, validation as usual', async () => {
    const c = bed.cell!;
    const locks = new NodeLockManager({
      root: c.root,
      conductorId: 'test-holder',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500, pollMs: 25 },
    });
    held = await locks.acquire({ node: 'node-b', imageId: BUSY, mode: 'exclusive' }, { timeoutMs: 5_000 });
    await c.seed('node-a', BUSY, 64 * KiB);
    for (const n of [1, 2, 3, 4]) await c.seed('node-a', `img-${n}.qcow2`, 64 * KiB);
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'forged', LOCK_WAIT_MS: '300', MAX_ATTEMPTS: '3' }),
      90_000,
    ).ready();
    const t = c.topology;
    const copy = (n: number) => ({
      v: 1,
      requestId: `forged-${n}`,
      imageId: `img-${n}.qcow2`,
      destination: 'node-c',
      source: 'node-a',
    });
    const sentAt = Date.now();

    // The case: attempt 99, first seen 27 years ago.
    const plain = bed.client!.send(t.requestQueue.name, copy(1), {
      messageId: 'forged-1',
      headers: { 'x-icc-attempt': 99, 'x-icc-first-seen': LONG_AGO },
    });
    // A signature that is not ours; odd attempt values.
    const badSignature = bed.client!.send(t.requestQueue.name, copy(2), {
      messageId: 'forged-2',
      headers: { 'x-icc-attempt': 4, 'x-icc-first-seen': LONG_AGO, 'x-icc-signature': 'ab'.repeat(32) },
    });
    const oddValues = bed.client!.send(t.requestQueue.name, copy(3), {
      messageId: 'forged-3',
      headers: { 'x-icc-attempt': -7, 'x-icc-first-seen': 'yesterday' },
    });
    // Straight into a retry queue of the cell: it comes back with RabbitMQ's own x-death, still unsigned.
    const viaRetryQueue = bed.client!.send(t.retryQueues[0]!.name, copy(4), {
      messageId: 'forged-4',
      headers: { 'x-icc-attempt': 3, 'x-icc-first-seen': LONG_AGO },
    });
    // A "later attempt" of an invalid request is validated like any first one.
    const invalid = bed.client!.send(
      t.requestQueue.name,
      { v: 1, requestId: 'forged-bad', imageId: '../etc/passwd', destination: 'node-c' },
      { messageId: 'forged-bad', headers: { 'x-icc-attempt': 2, 'x-icc-first-seen': LONG_AGO } },
    );
    // A retryable failure: attempt 99 must not end it at once, nor may it go past MAX_ATTEMPTS (3).
    const busy = bed.client!.send(
      t.requestQueue.name,
      { v: 1, requestId: 'forged-busy', imageId: BUSY, destination: 'node-b', source: 'node-a' },
      { messageId: 'forged-busy', headers: { 'x-icc-attempt': 99, 'x-icc-first-seen': LONG_AGO } },
    );

    for (const [n, correlationId] of [plain, badSignature, oddValues, viaRetryQueue].entries()) {
      const final = await bed.client!.finalReply(correlationId, 30_000);
      expect(final, `forged-${n + 1}`).toMatchObject({
        requestId: `forged-${n + 1}`,
        status: 'completed',
        attempt: 1,
      });
      // Counted from when this conductor first saw it, which is after the test sent it.
      expect((final.durations as { totalMs: number }).totalMs, `forged-${n + 1}`).toBeLessThanOrEqual(
        Date.now() - sentAt,
      );
    }
    expect(await bed.client!.finalReply(invalid, 30_000)).toMatchObject({
      requestId: 'forged-bad',
      status: 'failed',
      reason: 'INVALID_REQUEST',
      attempt: 1,
    });

    const busyFinal = await bed.client!.finalReply(busy, 30_000);
    expect(busyFinal).toMatchObject({
      requestId: 'forged-busy',
      status: 'failed',
      reason: 'RETRIES_EXHAUSTED',
      attempt: 3,
    });
    expect(String(busyFinal.detail)).toContain('after 3 attempts');
    const busyAttempts = bed
      .client!.replies.filter((r) => r.correlationId === busy)
      .map((r) => r.body.attempt);
    expect(busyAttempts).toEqual([1, 2, 3]);

    const ignored = conductor.logs().filter((l) => String(l.msg).startsWith('x-icc headers not signed'));
    expect(new Set(ignored.map((l) => l.messageId))).toEqual(
      new Set(['forged-1', 'forged-2', 'forged-3', 'forged-4', 'forged-bad', 'forged-busy']),
    );
    const status = await waitFor(async () => {
      const s = await AdminHttp.of(conductor).json<{ totals: { untrustedHeaders: number } }>('/status');
      return s.totals.untrustedHeaders >= 6 ? s : undefined;
    }, 'the untrusted deliveries counted on /status');
    expect(status!.totals.untrustedHeaders).toBe(ignored.length);
    expect(errorLines([conductor])).toEqual([]);
  });
});
