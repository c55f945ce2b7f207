import { describe, expect, it } from 'vitest';
import {
  answeredLines,
  answersLogged,
  conductorTestbed,
  copiesPerDestination,
  errorLines,
} from './support/conductor-harness';
import { heldLockEntries, tmpFiles } from './support/cell-observers';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile } from './support/image-store-fixtures';
import { waitFor } from './support/async';

const MiB = 1024 * 1024;
const IMAGE = 'big.qcow2';
const DESTINATIONS = ['node-b', 'node-c', 'node-d', 'node-e', 'node-f', 'node-g'];

describe('conductor: graceful shutdown', () => {
  const bed = conductorTestbed(['node-a', ...DESTINATIONS]);
  const pool = bed.pool;

  it('SIGTERM during copies loses nothing: unfinished copies go back to the queue, another conductor completes them', async () => {
    const c = bed.cell!;
    const image = await c.seed('node-a', IMAGE, 128 * MiB);
    // A short grace period: copies still running after it are aborted and handed back.
    const first = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'stop-a', SHUTDOWN_GRACE_MS: '200' }),
      60_000,
    ).ready();
    const sent = DESTINATIONS.map((destination) => ({
      destination,
      correlationId: bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: `req-${destination}`,
        imageId: IMAGE,
        destination,
        source: 'node-a',
        sha256: image.sha256,
      }),
    }));

    // Several copies in flight (COPY_CONCURRENCY 4): freeze the process, check, then SIGTERM it.
    const partials = async () =>
      (await Promise.all(DESTINATIONS.map((d) => tmpFiles(c.root, d)))).flat().filter((f) => f.size > 0);
    await waitFor(async () => (await partials()).length >= 2, 'two copies in progress', 30_000);
    first.signal('SIGSTOP');
    const inFlightAtStop = (await partials()).length;
    expect(inFlightAtStop).toBeGreaterThanOrEqual(2);
    first.signal('SIGTERM');
    first.signal('SIGCONT');
    expect(await first.exited()).toEqual({ code: 0, signal: null });
    await first.waitForLog((l) => l.msg === 'conductor stopped', 'the stopped log', 1_000);

    // It left nothing behind: no partial copies, no lock held (only released generations, no readers).
    expect(await c.tmpLeftovers()).toEqual([]);
    expect(await heldLockEntries(c.root)).toEqual([]);
    // The grace period was too short for some: they were aborted and their messages handed back.
    const handedBack = first
      .logs()
      .filter((l) => l.msg === 'copy handed back to the queue at shutdown').length;
    expect(handedBack).toBeGreaterThanOrEqual(1);
    const completedByFirst = answeredLines([first]).length;

    const second = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'stop-b' }),
      60_000,
    ).ready();
    const replies = await Promise.all(sent.map((s) => bed.client!.finalReply(s.correlationId, 60_000)));
    for (const [i, reply] of replies.entries())
      expect(reply, sent[i]!.destination).toMatchObject({
        status: 'completed',
        destination: sent[i]!.destination,
      });
    for (const destination of DESTINATIONS)
      expect(await sha256OfFile(c.store.entries.imagePath(destination, IMAGE)), destination).toBe(
        image.sha256,
      );

    // Each destination copied exactly once, by one or the other; nothing failed, nothing left.
    await answersLogged(
      [first, second],
      sent.map((s) => `req-${s.destination}`),
    );
    const copies = copiesPerDestination([first, second]);
    expect(Object.fromEntries(copies)).toEqual(
      Object.fromEntries(DESTINATIONS.map((d) => [`${IMAGE} -> ${d}`, 1])),
    );
    expect(bed.client!.replies.filter((r) => r.body.status === 'failed')).toEqual([]);
    expect(await c.tmpLeftovers()).toEqual([]);
    expect(await heldLockEntries(c.root)).toEqual([]);
    expect(errorLines([first, second])).toEqual([]);

    // Idle, the second one stops at once and cleanly too.
    second.signal('SIGTERM');
    expect(await second.exited()).toEqual({ code: 0, signal: null });
    expect(second.logs().some((l) => l.msg === 'conductor stopped')).toBe(true);
    const redelivered = answeredLines([second]).filter((l) => l.redelivered === true).length;
    console.log(
      `conductor-shutdown: ${JSON.stringify({ requests: sent.length, inFlightAtStop, completedByFirst, handedBack, completedBySecond: answeredLines([second]).length, redelivered })}`,
    );
  });
});
