import { describe, expect, it } from 'vitest';
import { NodeLockManager } from '@app/locking';
import { AdminHttp } from './support/admin-http';
import { conductorTestbed } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { type PrivateBroker, usePrivateBroker } from './support/private-broker';
import { sleep, waitFor } from './support/async';
import { RawAmqpClient } from './support/raw-amqp-client';
import {
  LATE_IMAGES as IMAGES,
  droppedSummary,
  expectDroppedQuietly,
  holdDestinations,
  outcomeOf,
  sendLateRequests,
  waitingForLocks,
} from './support/late-work';

const KiB = 1024;

/** Broker-side pids of the connections named `name` on the private broker (what close_connection wants). */
async function connectionPids(broker: PrivateBroker, name: string): Promise<string[]> {
  const listing = await broker.ctl(['list_connections', 'pid', 'client_properties']);
  return listing
    .split('\n')
    .map((line) => line.split('\t'))
    .filter(([pid, props]) => pid?.startsWith('<') && props?.includes(`{"connection_name","${name}"}`))
    .map(([pid]) => pid!);
}

/**
 * Issue 18.2 with a broker of the test's own: conductor A holds two requests (waiting for locks the test
 * holds) when it is frozen and its connection is closed by the broker, as a partition longer than the
 * broker's heartbeats does. Conductor B gets the redeliveries and answers them. When A runs again, its
 * lock waits end (timed out, or the image already there): that work is no longer A's to answer.
 */
describe('conductor: work whose delivery died with its connection', () => {
  const privateBroker = usePrivateBroker();
  const bed = conductorTestbed(['node-a', 'node-b']);

  it('is dropped quietly after the conductor runs again: no late result, no retry copy', async () => {
    const broker = await privateBroker();
    const c = bed.cell!;
    for (const imageId of IMAGES) await c.seed('node-a', imageId, 64 * KiB);
    const client = await RawAmqpClient.open(broker.url);
    const locks = new NodeLockManager({
      root: c.root,
      conductorId: 'test-holder',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500, pollMs: 25 },
    });
    try {
      const held = await holdDestinations(locks, 'node-b');
      const env = (id: string, lockWaitMs: number) =>
        c.conductorEnv({ CONDUCTOR_ID: id, AMQP_URL: broker.url, LOCK_WAIT_MS: String(lockWaitMs) });
      const a = await ConductorProcess.start(bed.pool, env('late-a', 4_000), 110_000).ready(60_000);
      const sent = sendLateRequests(client, c.topology, 'req', { source: 'node-a', destination: 'node-b' });
      const ids = sent.map((s) => s.requestId);
      await waitFor(
        () => waitingForLocks(AdminHttp.of(a), ids),
        'conductor A waiting for both locks',
        30_000,
      );
      const pids = await connectionPids(broker, 'conductor-late-a');
      expect(pids.length).toBe(1);
      a.signal('SIGSTOP');
      try {
        await broker.ctl(['close_connection', pids[0]!, 'e2e: partitioned']);
        // Frozen past its LOCK_WAIT_MS: when it runs again its waits end at once.
        await sleep(4_500);
        const b = await ConductorProcess.start(bed.pool, env('late-b', 60_000), 110_000).ready(60_000);
        await waitFor(
          () => waitingForLocks(AdminHttp.of(b), ids),
          'conductor B waiting for both redelivered requests',
          30_000,
        );
        // B answers req-1 before A runs again; req-2 stays locked until A has dealt with its first delivery.
        await held.get(IMAGES[0]!)!.release();
        held.delete(IMAGES[0]!);
        expect(await client.finalReply(sent[0]!.correlationId, 30_000)).toMatchObject({
          status: 'completed',
          conductorId: 'late-b',
        });
      } finally {
        a.signal('SIGCONT');
      }
      for (const s of sent)
        await waitFor(() => outcomeOf(a.logs(), s.requestId), `A's outcome of ${s.requestId}`, 30_000);
      await held.get(IMAGES[1]!)!.release();
      held.delete(IMAGES[1]!);
      expect(await client.finalReply(sent[1]!.correlationId, 30_000)).toMatchObject({
        status: 'completed',
        conductorId: 'late-b',
      });
      // Longer than every retry tier (200, 500, 1000 ms): a retry copy would have come back and been answered.
      await sleep(3_000);
      expectDroppedQuietly(client, sent, a.logs(), 'late-b');
      console.log(
        `conductor-late-work: ${JSON.stringify({ dropped: droppedSummary(a.logs()), replies: client.replies.length })}`,
      );
    } finally {
      await locks.releaseAll().catch(() => undefined);
      await client.close();
    }
  });
});
