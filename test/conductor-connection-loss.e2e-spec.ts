import { describe, expect, it } from 'vitest';
import {
  answeredLines,
  conductorTestbed,
  copiesPerDestination,
  errorLines,
} from './support/conductor-harness';
import { heldLockEntries, tmpFiles } from './support/cell-observers';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile } from './support/image-store-fixtures';
import { closeConnectionPids, connectionPidsNamed } from './support/rabbitmq';
import { waitFor } from './support/async';
import { TestCell } from './support/test-cell';

const MiB = 1024 * 1024;
const NODES = ['node-0', 'node-1', 'node-2', 'node-3', 'node-4', 'node-5'];
const IMAGES = ['img-0.raw', 'img-1.raw', 'img-2.raw'];

/** Partial copies under way in any node's tmp folder. */
async function partials(c: TestCell) {
  return (await Promise.all(NODES.map((n) => tmpFiles(c.root, n)))).flat().filter((f) => f.size > 0);
}

describe('conductor: its broker connection closed mid-run', () => {
  const bed = conductorTestbed(NODES);
  const pool = bed.pool;

  it('reconnects, resumes consuming, and every request still completes with one copy per destination', async () => {
    const c = bed.cell!;
    const seeds = new Map<string, { sha256: string; size: number }>();
    for (const [i, imageId] of IMAGES.entries())
      seeds.set(imageId, await c.seed(NODES[i]!, imageId, 32 * MiB));
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'conn-a' }),
      90_000,
    ).ready();

    const sent: Array<{ correlationId: string; imageId: string; destination: string }> = [];
    const publish = (i: number) => {
      const imageId = IMAGES[i]!;
      for (const destination of NODES.filter((_, n) => n !== i))
        for (const copy of ['x', 'y']) {
          const body = {
            v: 1,
            requestId: `req-${imageId}-${destination}-${copy}`,
            imageId,
            destination,
            sha256: seeds.get(imageId)!.sha256,
          };
          sent.push({
            correlationId: bed.client!.send(c.topology.requestQueue.name, body),
            imageId,
            destination,
          });
        }
    };

    // Cut only this conductor's connection, once per image's fan-out, while a copy is in flight: the
    // process is frozen while the broker closes the connection, so the cut lands mid-copy (answers and
    // acks pending). The last fan-out is published while the conductor reconnects.
    let cuts = 0;
    for (const i of [0, 1]) {
      const pids = await connectionPidsNamed('conductor-conn-a');
      expect(pids.length).toBe(1);
      publish(i);
      // Frozen while a copy is seen in flight: looked at again once frozen, and a copy that ended in
      // between is no hit (resumed at once, a freeze of milliseconds, and looked for again).
      for (let look = 1; ; look++) {
        await waitFor(async () => (await partials(c)).length > 0, 'a copy in flight', 30_000);
        conductor.signal('SIGSTOP');
        if ((await partials(c)).length > 0) break;
        conductor.signal('SIGCONT');
        if (look === 20) throw new Error('20 freezes found no copy in flight');
      }
      try {
        await closeConnectionPids(pids, 'e2e: connection closed mid-run');
        cuts++;
      } finally {
        conductor.signal('SIGCONT');
      }
      if (i === 1) publish(2);
      await conductor.waitForLog(
        (l) => l.msg === 'connected to RabbitMQ' && Number(l.reconnects) === cuts,
        `reconnect #${cuts}`,
        30_000,
      );
    }

    const replies = await Promise.all(sent.map((s) => bed.client!.finalReply(s.correlationId, 90_000)));
    for (const [i, reply] of replies.entries())
      expect(
        ['completed', 'already-present'],
        `${sent[i]!.imageId} -> ${sent[i]!.destination}: ${JSON.stringify(reply)}`,
      ).toContain(reply.status);
    // At least once: every answer whose ack was lost with the connection is redelivered and answered again.
    const lostAcks = conductor
      .logs()
      .filter((l) => l.msg.startsWith("the delivery's channel is gone") && l.outcome === 'acked').length;
    // A redelivery whose first final answer was recorded before the cut is answered with that answer
    // (request-answers.ts), under its own log line; the test sends each request once, so each such line
    // is a redelivery.
    const againLines = () =>
      conductor
        .logs()
        .filter((l) => l.msg === 'request sent again after its final answer: answered with that answer');
    await waitFor(
      () => answeredLines([conductor]).length + againLines().length >= sent.length + lostAcks,
      'the redeliveries to be answered',
      30_000,
    );
    const lines = answeredLines([conductor]);
    const again = againLines();
    expect(lines.length + again.length).toBe(sent.length + lostAcks);
    expect(lines.filter((l) => l.redelivered === true).length + again.length).toBeGreaterThanOrEqual(
      lostAcks,
    );

    for (const s of sent)
      expect(await sha256OfFile(c.store.entries.imagePath(s.destination, s.imageId))).toBe(
        seeds.get(s.imageId)!.sha256,
      );
    const copies = copiesPerDestination([conductor]);
    expect(Object.fromEntries(copies)).toEqual(
      Object.fromEntries(sent.map((s) => [`${s.imageId} -> ${s.destination}`, 1])),
    );
    expect(await c.tmpLeftovers()).toEqual([]);
    expect(await heldLockEntries(c.root)).toEqual([]);
    expect(conductor.child.process.exitCode).toBeNull();
    expect(errorLines([conductor])).toEqual([]);
    console.log(
      `conductor-connection-loss: ${JSON.stringify({ requests: sent.length, connectionCuts: cuts, lostAcks, answered: lines.length, copies: copies.size, redelivered: lines.filter((l) => l.redelivered === true).length, coalesced: lines.filter((l) => l.coalesced === true).length })}`,
    );
  });
});
