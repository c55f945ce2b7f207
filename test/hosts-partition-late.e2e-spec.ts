import { describe, expect, it } from 'vitest';
import { NodeLockManager } from '@app/locking';
import { HOSTS_LOCK_TIMINGS } from './campaigns/hosts';
import { sleep, until, waitFor } from './support/async';
import { ResultsTap, conductorPool } from './support/conductor-harness';
import { BedCell } from './support/hosts/bed-cell';
import { HostBed } from './support/hosts/host-bed';
import { sh } from './support/hosts/host-network';
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
/** AMQP heartbeat of the cut-off conductor, in seconds: the broker drops it after about two of them. */
const HEARTBEAT_S = 2;

/**
 * Does a process on `host` still have an established TCP connection to `url`? Seen by the host's kernel
 * (ss in its namespace): the conductor's own log cannot tell while its mount hangs, as its log writes
 * wait behind hung file calls in the same thread pool.
 */
async function connectedFrom(bed: HostBed, host: string, url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  const [command, ...prefix] = bed.launcher(host);
  const out = await sh(command!, [
    ...prefix,
    'ss',
    '-Htn',
    'state',
    'established',
    'dst',
    `${hostname}:${port}`,
  ]);
  return out.trim() !== '';
}

/**
 * Issue 18.2 on the multi-host bed: a real partition, not a paused process. Conductor n1 holds two
 * requests, each waiting for a destination lock the test holds, when its host's link is cut (broker and
 * mount together) for longer than two AMQP heartbeats: the broker drops n1's connection and redelivers
 * both to n2, which answers them once the test lets the locks go. Nothing on n1 can end during the cut
 * (its lock waits hang on its mount), so when the link returns n1 finds its work stale: the images are
 * there, its source locks went stale. That work is no longer n1's to answer.
 */
describe('hosts: a conductor cut off past two broker heartbeats', () => {
  let bed: HostBed | undefined;
  let client: RawAmqpClient | undefined;
  let tap: ResultsTap | undefined;
  let locks: NodeLockManager | undefined;
  const pool = conductorPool(async () => {
    await locks?.releaseAll().catch(() => undefined);
    await tap?.close();
    await client?.close();
    await bed?.teardown();
  });

  it('drops its stale work quietly when the link returns: one final answer per request, no retry', async () => {
    bed = await HostBed.create({ hosts: ['n1', 'n2'], brokers: 1 });
    const cell = await BedCell.create(bed, pool, ['node-a', 'node-b']);
    for (const imageId of IMAGES) await cell.seed('node-a', imageId, 64 * KiB);
    const brokerUrl = bed.brokers().urls[0]!;
    client = await RawAmqpClient.open(brokerUrl);
    tap = await ResultsTap.open(cell.topology, [brokerUrl]);
    locks = new NodeLockManager({ root: bed.root, conductorId: 'test-holder', timings: HOSTS_LOCK_TIMINGS });
    const held = await holdDestinations(locks, 'node-b');

    const n1 = await cell.start('n1', 'late-n1', { AMQP_URL: `${brokerUrl}?heartbeat=${HEARTBEAT_S}` });
    const sent = sendLateRequests(client, cell.topology, 'late', { source: 'node-a', destination: 'node-b' });
    const ids = sent.map((s) => s.requestId);
    await waitFor(() => waitingForLocks(n1.admin, ids), 'n1 waiting for both locks', 30_000);
    // Started now, n2 finds the queue empty: both deliveries are n1's until the broker drops n1.
    const n2 = await cell.start('n2', 'late-n2');

    await bed.cutLink('n1');
    try {
      const broker = bed.brokers().nodes[0]!;
      // Each probe runs a program: every half second is often enough.
      await until(
        async () =>
          !(await broker.ctl(['list_connections', 'client_properties'])).includes('conductor-late-n1'),
        "the broker dropping n1's connection",
        60_000,
        500,
      );
      await until(
        async () => !(await connectedFrom(bed!, 'n1', brokerUrl)),
        'n1 giving up its broker connection (missed heartbeats)',
        60_000,
        500,
      );
      await waitFor(() => waitingForLocks(n2.admin, ids), 'n2 waiting for both redelivered requests', 60_000);
      for (const lock of held.values()) await lock.release();
      held.clear();
      for (const s of sent)
        expect(await client.finalReply(s.correlationId, 60_000), s.requestId).toMatchObject({
          status: 'completed',
          conductorId: 'late-n2',
        });
    } finally {
      await bed.restoreLink('n1');
    }

    for (const s of sent)
      await waitFor(
        () => outcomeOf(n1.conductor.logs(), s.requestId),
        `n1's outcome of ${s.requestId}`,
        60_000,
      );
    await n1.conductor.waitForLog(
      (l) => l.msg === 'connected to RabbitMQ' && Number(l.reconnects) >= 1,
      "n1's reconnection",
      60_000,
    );
    // Longer than every retry tier (200, 500, 1000 ms): a retry copy would have come back and been answered.
    await sleep(3_000);
    const n1Lines = n1.conductor.logs();
    expectDroppedQuietly(client, sent, n1Lines, 'late-n2');
    for (const s of sent)
      expect(tap.of(s.requestId), `results of ${s.requestId} on the events exchange`).toEqual([
        expect.objectContaining({ status: 'completed', conductorId: 'late-n2' }),
      ]);
    console.log(
      `hosts-partition-late: ${JSON.stringify({
        faults: bed.faults,
        dropped: droppedSummary(n1Lines),
        replies: client.replies.length,
        results: tap.results.length,
      })}`,
    );
  }, 180_000);
});
