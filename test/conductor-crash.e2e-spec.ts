import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { answeredLines, answersLogged, conductorTestbed, errorLines } from './support/conductor-harness';
import { FinalPathsWatcher, partialCopies, tmpFiles } from './support/cell-observers';
import { ConductorProcess } from './support/conductor-process';
import { exists, sha256OfFile } from './support/image-store-fixtures';
import { waitFor } from './support/async';

const MiB = 1024 * 1024;
const IMAGE = 'big.qcow2';

describe('conductor: SIGKILL mid-copy', () => {
  let watcher: FinalPathsWatcher | undefined;
  const bed = conductorTestbed(['node-a', 'node-b'], {
    cleanup: async () => {
      await watcher?.stop();
    },
  });
  const pool = bed.pool;

  it('redelivers the request; another conductor takes the stale lock over and completes it; the final path never holds a partial image', async () => {
    const c = bed.cell!;
    const image = await c.seed('node-a', IMAGE, 256 * MiB);
    const finalPath = c.store.entries.imagePath('node-b', IMAGE);
    // Whenever the final path exists during the test, it must hold the whole, verified image.
    watcher = new FinalPathsWatcher(10);
    watcher.watch(finalPath, image);

    const first = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'crash-a' }),
      60_000,
    ).ready();
    const correlationId = bed.client!.send(c.topology.requestQueue.name, {
      v: 1,
      requestId: 'req-big',
      imageId: IMAGE,
      destination: 'node-b',
      source: 'node-a',
      sha256: image.sha256,
    });

    // Mid-copy: a partial file in the destination's tmp folder. Freeze the process first, so what we
    // check is what the kill interrupts.
    // The partial's record (`.origin.part`, what a resuming copy checks) sits beside it from the start.
    const dataParts = async () => await partialCopies(c.root, 'node-b');
    await waitFor(
      async () => (await dataParts()).some((f) => f.size > 0),
      'the partial copy to grow',
      30_000,
    );
    first.signal('SIGSTOP');
    const partial = await dataParts();
    expect(partial.length, 'a partial copy at the kill').toBe(1);
    expect((await tmpFiles(c.root, 'node-b')).map((f) => f.name)).toContain(
      partial[0]!.name.replace(/\.part$/, '.origin.part'),
    );
    expect(partial[0]!.size).toBeLessThan(image.size);
    expect(await exists(finalPath)).toBe(false);
    // The dead holder's generation of the destination lock, left behind unreleased.
    const lockDir = path.join(c.root, 'node-b', 'locks', IMAGE);
    const held = (await fsp.readdir(lockDir)).filter((n) => /^g-\d+$/.test(n));
    expect(held.length).toBe(1);
    expect((await fsp.readdir(path.join(lockDir, held[0]!))).some((n) => n.startsWith('h~crash-a~'))).toBe(
      true,
    );
    const deadGeneration = Number(held[0]!.slice(2));
    first.signal('SIGKILL');
    expect(await first.exited()).toMatchObject({ signal: 'SIGKILL' });
    expect(answeredLines([first])).toEqual([]);

    const second = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'crash-b' }),
      60_000,
    ).ready();
    const reply = await bed.client!.finalReply(correlationId, 45_000);
    expect(reply).toMatchObject({
      requestId: 'req-big',
      status: 'completed',
      conductorId: 'crash-b',
      bytes: image.size,
      sha256: image.sha256,
    });
    const [answered] = await answersLogged([second], ['req-big']);
    expect(answered).toMatchObject({ requestId: 'req-big', status: 'completed', redelivered: true });

    expect(await sha256OfFile(finalPath)).toBe(image.sha256);
    const meta = await c.store.entries.readMeta('node-b', IMAGE);
    expect(meta).toMatchObject({ sha256: image.sha256, size: image.size, source: { node: 'node-a' } });
    // Published under a newer generation than the dead holder's: the takeover, recorded as fencing token.
    expect(meta!.fencingToken).toBeGreaterThan(deadGeneration);
    // The dead holder's partial copy was resumed or cleared by the new holder of the destination lock.
    expect(await c.tmpLeftovers()).toEqual([]);
    await watcher.stop();
    expect(watcher.problems).toEqual([]);
    expect(watcher.hashed).toBeGreaterThanOrEqual(1);
    expect(errorLines([second])).toEqual([]);
    console.log(
      `conductor-crash: ${JSON.stringify({ killedAtBytes: partial[0]!.size, imageBytes: image.size, completedBy: reply.conductorId, redelivered: answered!.redelivered, deadGeneration, newGeneration: meta!.fencingToken, finalPathLooks: watcher.looks, finalPathHashes: watcher.hashed })}`,
    );
  });
});
