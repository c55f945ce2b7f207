import { beforeEach, describe, expect, it } from 'vitest';
import {
  ResultsTap,
  answeredLines,
  conductorPool,
  copiesPerDestination,
  errorLines,
  publishConfirmed,
} from './support/conductor-harness';
import { heldLockEntries } from './support/cell-observers';
import { ConductorProcess } from './support/conductor-process';
import { NodeLockManager } from '@app/locking';
import { exists, sha256OfFile } from './support/image-store-fixtures';
import { rabbitmqApp, waitForBroker } from './support/rabbitmq';
import { waitFor } from './support/async';
import { TestCell } from './support/test-cell';

/*
 * Stops the whole broker for a few seconds, which cuts every client's connection: vitest.config.mts runs
 * this file alone, after all the others.
 */

const MiB = 1024 * 1024;
const NODES = ['node-0', 'node-1', 'node-2', 'node-3', 'node-4', 'node-5'];
const IMAGES = ['img-0.raw', 'img-1.raw', 'img-2.raw'];
const BLOCKED = { imageId: 'img-0.raw', destination: 'node-3' };

let brokerStopped = false;

async function restoreBroker(): Promise<void> {
  if (!brokerStopped) return;
  await rabbitmqApp('start_app');
  brokerStopped = false;
  await waitForBroker();
}

describe('conductor: RabbitMQ restarted during a run', () => {
  let cell: TestCell | undefined;
  let tap: ResultsTap | undefined;
  const pool = conductorPool(async () => {
    await restoreBroker(); // whatever happened in the test, the broker comes back first
    await tap?.close();
    await cell?.cleanup();
  });

  beforeEach(async () => {
    cell = await TestCell.create({ nodes: NODES });
    tap = await ResultsTap.open(cell.topology);
  });

  it('reconnects and completes every request, those in flight at the outage and those sent after it', async () => {
    const c = cell!;
    const seeds = new Map<string, { sha256: string; size: number }>();
    for (const [i, imageId] of IMAGES.entries())
      seeds.set(imageId, await c.seed(NODES[i]!, imageId, 8 * MiB));
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'restart-a', COPY_CONCURRENCY: '6' }),
      120_000,
    ).ready();

    const pairs: Array<{ requestId: string; imageId: string; destination: string }> = [];
    const batch = (images: number[]) =>
      images.flatMap((i) =>
        NODES.filter((_, n) => n !== i).flatMap((destination) =>
          ['x', 'y'].map((copy) => {
            const imageId = IMAGES[i]!;
            const requestId = `req-${imageId}-${destination}-${copy}`;
            pairs.push({ requestId, imageId, destination });
            // No reply_to: a reply queue would not outlive the outage; results are read from the events exchange.
            return {
              body: { v: 1, requestId, imageId, destination, sha256: seeds.get(imageId)!.sha256 },
              messageId: requestId,
            };
          }),
        ),
      );

    // One destination's lock is held here, so its copy (two coalesced requests) is still waiting, in flight,
    // when the broker goes down; it is let go during the outage, so the copy completes while the broker is
    // away and its answer and ack cannot be delivered.
    const held = await new NodeLockManager({
      root: c.root,
      conductorId: 'test-holder',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500, pollMs: 25 },
    }).acquire(
      { node: BLOCKED.destination, imageId: BLOCKED.imageId, mode: 'exclusive' },
      { timeoutMs: 5_000 },
    );
    try {
      // Confirmed by the broker before the outage: durable requests in a quorum queue survive it.
      await publishConfirmed(c.topology.requestQueue.name, batch([0, 1]));
      await waitFor(
        () => answeredLines([conductor]).length >= pairs.length - 2,
        'every request but the blocked ones answered',
        60_000,
      );
      expect(
        answeredLines([conductor]).filter(
          (l) => l.destination === BLOCKED.destination && l.imageId === BLOCKED.imageId,
        ),
      ).toEqual([]);
      brokerStopped = true;
      try {
        await rabbitmqApp('stop_app');
        await held.release();
        await waitFor(
          () => exists(c.store.entries.metaPath(BLOCKED.destination, BLOCKED.imageId)),
          'the blocked copy to complete during the outage',
          20_000,
        );
      } finally {
        await restoreBroker();
      }
    } finally {
      await held.release();
    }
    await publishConfirmed(c.topology.requestQueue.name, batch([2]));

    const finals = await tap!.waitForFinal(
      pairs.map((p) => p.requestId),
      90_000,
    );
    for (const p of pairs)
      expect(
        ['completed', 'already-present'],
        `${p.requestId}: ${JSON.stringify(finals.get(p.requestId))}`,
      ).toContain(finals.get(p.requestId)!.status);
    for (const p of pairs)
      expect(await sha256OfFile(c.store.entries.imagePath(p.destination, p.imageId)), p.requestId).toBe(
        seeds.get(p.imageId)!.sha256,
      );
    // The blocked copy's two requests were handed out again after the restart and answered (already-present).
    for (const copy of ['x', 'y']) {
      const requestId = `req-${BLOCKED.imageId}-${BLOCKED.destination}-${copy}`;
      await waitFor(
        () => answeredLines([conductor]).some((l) => l.requestId === requestId && l.redelivered === true),
        `${requestId} redelivered and answered`,
        30_000,
      );
    }
    const reconnected = conductor
      .logs()
      .filter((l) => l.msg === 'connected to RabbitMQ' && Number(l.reconnects) >= 1);
    expect(reconnected.length).toBeGreaterThanOrEqual(1);

    // A copy finished while the broker was down has no answered line (its answer failed and the message
    // came back as already-present), so at most one completed copy per destination shows in the logs.
    const copies = copiesPerDestination([conductor]);
    expect([...copies.values()].every((n) => n === 1)).toBe(true);
    expect(await c.tmpLeftovers()).toEqual([]);
    expect(await heldLockEntries(c.root)).toEqual([]);
    expect(conductor.child.process.exitCode).toBeNull();
    expect(errorLines([conductor])).toEqual([]);

    const lines = answeredLines([conductor]);
    console.log(
      `conductor-broker-restart: ${JSON.stringify({
        requests: pairs.length,
        answered: lines.length,
        copiesLogged: copies.size,
        destinations: new Set(pairs.map((p) => `${p.imageId} -> ${p.destination}`)).size,
        redelivered: lines.filter((l) => l.redelivered === true).length,
        handedBack: conductor.logs().filter((l) => l.msg === 'could not answer a request; handing it back')
          .length,
        reconnects: reconnected.length,
      })}`,
    );
  });
});
