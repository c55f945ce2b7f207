import { describe, expect, it } from 'vitest';
import { HEADER_ATTEMPT, HEADER_REASON } from '@app/contracts';
import { type HeldLock, NodeLockManager } from '@app/locking';
import { conductorTestbed, errorLines, takeDeadLetters } from './support/conductor-harness';
import { heldLockEntries } from './support/cell-observers';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile } from './support/image-store-fixtures';
import { waitFor } from './support/async';
import { TestCell } from './support/test-cell';

const MiB = 1024 * 1024;
const IMAGE = 'busy.qcow2';

describe('conductor: retry path', () => {
  let held: HeldLock | undefined;
  const bed = conductorTestbed(['node-a', 'node-b'], {
    cleanup: async () => {
      await held?.release();
      held = undefined;
    },
  });
  const pool = bed.pool;

  /** Holds the destination lock from this process, as another conductor copying into node-b would. */
  async function holdDestinationLock(c: TestCell): Promise<HeldLock> {
    const locks = new NodeLockManager({
      root: c.root,
      conductorId: 'test-holder',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500, pollMs: 25 },
    });
    return locks.acquire({ node: 'node-b', imageId: IMAGE, mode: 'exclusive' }, { timeoutMs: 5_000 });
  }

  it('retries a LOCK_TIMEOUT through the delayed retry queue, telling the requester, and completes once the lock is free', async () => {
    const c = bed.cell!;
    const image = await c.seed('node-a', IMAGE, 1 * MiB);
    held = await holdDestinationLock(c);
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'retry-a', LOCK_WAIT_MS: '300', MAX_ATTEMPTS: '20' }),
      60_000,
    ).ready();
    const correlationId = bed.client!.send(c.topology.requestQueue.name, {
      v: 1,
      requestId: 'req-busy',
      imageId: IMAGE,
      destination: 'node-b',
      source: 'node-a',
    });

    // Two failed attempts reported as not final, then the lock is given back.
    const failedAttempts = () =>
      bed.client!.replies.filter((r) => r.correlationId === correlationId && r.body.status === 'failed');
    await waitFor(() => failedAttempts().length >= 2, 'two retryable failures', 30_000);
    await held.release();
    held = undefined;

    const final = await bed.client!.finalReply(correlationId, 30_000);
    expect(final).toMatchObject({ requestId: 'req-busy', status: 'completed', sha256: image.sha256 });
    const failures = failedAttempts();
    for (const [i, failure] of failures.entries())
      expect(failure.body, `failed attempt ${i + 1}`).toMatchObject({
        requestId: 'req-busy',
        status: 'failed',
        reason: 'LOCK_TIMEOUT',
        retryable: true,
        attempt: i + 1,
      });
    // The completing attempt came back through the retry queue (x-icc-attempt incremented each time).
    expect(final.attempt).toBe(failures.length + 1);
    const replies = bed.client!.replies.filter((r) => r.correlationId === correlationId);
    expect(replies.at(-1)!.body.status).toBe('completed');

    expect(await sha256OfFile(c.store.entries.imagePath('node-b', IMAGE))).toBe(image.sha256);
    expect(conductor.logs().filter((l) => l.msg === 'copy failed, retry scheduled').length).toBe(
      failures.length,
    );
    expect(await takeDeadLetters(c.topology)).toEqual([]);
    expect(await c.tmpLeftovers()).toEqual([]);
    expect(await heldLockEntries(c.root)).toEqual([]);
    expect(errorLines([conductor])).toEqual([]);
    console.log(
      `conductor-retry: ${JSON.stringify({ retryableResults: failures.length, completedAtAttempt: final.attempt })}`,
    );
  });

  it('gives up after MAX_ATTEMPTS with RETRIES_EXHAUSTED, dead-lettered with the reason', async () => {
    const c = bed.cell!;
    await c.seed('node-a', IMAGE, 1 * MiB);
    held = await holdDestinationLock(c);
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'retry-b', LOCK_WAIT_MS: '200', MAX_ATTEMPTS: '3' }),
      60_000,
    ).ready();
    const correlationId = bed.client!.send(
      c.topology.requestQueue.name,
      { v: 1, requestId: 'req-never', imageId: IMAGE, destination: 'node-b', source: 'node-a' },
      { messageId: 'req-never' },
    );

    const final = await bed.client!.finalReply(correlationId, 30_000);
    expect(final).toMatchObject({
      requestId: 'req-never',
      status: 'failed',
      reason: 'RETRIES_EXHAUSTED',
      retryable: false,
      attempt: 3,
    });
    expect(String(final.detail)).toContain('LOCK_TIMEOUT');
    expect(
      bed.client!.replies.filter((r) => r.correlationId === correlationId && r.body.retryable === true)
        .length,
    ).toBe(2);
    const dead = await waitFor(
      async () => {
        const taken = await takeDeadLetters(c.topology);
        return taken.length > 0 ? taken : undefined;
      },
      'the dead letter',
      10_000,
    );
    expect(dead!.length).toBe(1);
    expect(dead![0]!.headers).toMatchObject({ [HEADER_REASON]: 'RETRIES_EXHAUSTED', [HEADER_ATTEMPT]: 3 });
    expect(conductor.child.process.exitCode).toBeNull();
  });
});
