import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { pieceBytesFor } from '@app/image-store';
import { answersLogged, conductorTestbed, errorLines } from './support/conductor-harness';
import { FinalPathsWatcher, heldLockEntries, lockLeftovers } from './support/cell-observers';
import { ConductorProcess, type LogLine } from './support/conductor-process';
import { exists, sha256OfFile, writeRandomFile } from './support/image-store-fixtures';
import { until, waitFor } from './support/async';
import { ProgressTap } from './support/progress-tap';
import type { TestCell } from './support/test-cell';

/*
 * A copy without a named source, read from several verified holders at once (docs/copies.md, "Several
 * holders at once"), with real conductor processes and the broker: every holder's reads are capped at
 * 4 MiB/s, the destination's writes at 64 MiB/s, so the three holders' caps (12 MiB/s) stay below the
 * destination's and the copy takes all three.
 */

const MiB = 1024 * 1024;
const HOLDERS = ['node-a', 'node-b', 'node-c'];
const DESTINATION = 'node-d';
const READ_MIBPS = 4;
const IMAGE = 'several.qcow2';

function conductorEnv(cell: TestCell, id: string): Record<string, string> {
  return cell.conductorEnv({
    CONDUCTOR_ID: id,
    NODE_READ_BPS: `${READ_MIBPS}Mi`,
    NODE_WRITE_BPS: '64Mi',
    // 'reading from several holders' is a debug line.
    LOG_LEVEL: 'debug',
    // A killed conductor's lock entries are collected one stale time after it died, not a minute later.
    LEFTOVER_SWEEP_MS: '1000',
  });
}

/** The same verified image (meta and piece list) on every holder. */
async function seedHolders(cell: TestCell, bytes: number): Promise<{ sha256: string; size: number }> {
  const file = path.join(cell.root, `.seed-${IMAGE}`);
  const sha256 = await writeRandomFile(file, bytes);
  for (const node of HOLDERS) await cell.store.imports.importImage(node, IMAGE, file);
  await fsp.rm(file);
  return { sha256, size: bytes };
}

/** Flips one byte in every piece of a node's image, in place: same size, same meta, same piece list. */
async function corruptEveryPiece(cell: TestCell, node: string, size: number): Promise<void> {
  const handle = await fsp.open(cell.store.entries.imagePath(node, IMAGE), 'r+');
  try {
    const byte = Buffer.alloc(1);
    for (let offset = 1000; offset < size; offset += pieceBytesFor(size)!) {
      await handle.read(byte, 0, 1, offset);
      byte[0] = byte[0]! ^ 0xff;
      await handle.write(byte, 0, 1, offset);
    }
  } finally {
    await handle.close();
  }
}

function severalHolderLines(conductor: ConductorProcess): LogLine[] {
  return conductor.logs().filter((l) => l.msg === 'reading from several holders');
}

/** Every holder a copy read from: the source it chose, and the helpers the debug line names. */
function holdersRead(line: LogLine): string[] {
  return [String(line.source), ...(line.helpers as string[])].sort();
}

describe('conductor: one copy from several verified holders', () => {
  let watcher: FinalPathsWatcher | undefined;
  let progress: ProgressTap | undefined;
  const bed = conductorTestbed([...HOLDERS, DESTINATION], {
    cleanup: async () => {
      await watcher?.stop();
      await progress?.close();
    },
  });

  const request = (requestId: string, image: { sha256: string }) =>
    bed.client!.send(bed.cell!.topology.requestQueue.name, {
      v: 1,
      requestId,
      imageId: IMAGE,
      destination: DESTINATION,
      sha256: image.sha256,
    });

  /** Whenever the destination's final path exists, it holds the whole verified image. */
  const watchFinalPath = (image: { sha256: string; size: number }) => {
    watcher = new FinalPathsWatcher(10);
    watcher.watch(bed.cell!.store.entries.imagePath(DESTINATION, IMAGE), image);
  };

  const expectVerifiedDestination = async (image: { sha256: string; size: number }) => {
    const c = bed.cell!;
    expect(await sha256OfFile(c.store.entries.imagePath(DESTINATION, IMAGE))).toBe(image.sha256);
    expect(await c.store.copies.verifiedImage(DESTINATION, IMAGE, image)).toMatchObject(image);
    await watcher!.stop();
    expect(watcher!.problems).toEqual([]);
    expect(watcher!.hashed).toBeGreaterThanOrEqual(1);
  };

  it('reads disjoint pieces from three capped holders, faster than one holder could, and leaves nothing behind', async () => {
    const c = bed.cell!;
    const image = await seedHolders(c, 32 * MiB);
    watchFinalPath(image);
    const conductor = await ConductorProcess.start(bed.pool, conductorEnv(c, 'several-a'), 60_000).ready();

    const reply = await bed.client!.finalReply(request('req-several', image), 45_000);
    expect(reply).toMatchObject({ status: 'completed', attempt: 1, bytes: image.size, sha256: image.sha256 });
    // Right after the answer: every lock (the destination's, the source's and each helper's) given back.
    expect(await heldLockEntries(c.root)).toEqual([]);
    expect(await c.tmpLeftovers()).toEqual([]);
    await expectVerifiedDestination(image);

    const [several] = severalHolderLines(conductor);
    expect(several, 'the conductor logs the holders it reads from').toBeDefined();
    expect(holdersRead(several!)).toEqual(HOLDERS);
    // The answer names the holder chosen first (docs/copies.md), the others are in the debug line.
    expect(reply.source).toBe(several!.source);
    // One holder alone reads at most 4 MiB/s (no burst: a limiter books time ahead), so 32 MiB from one
    // would take 8 s: a copy well under that read from more than one.
    const copyMs = (reply.durations as { copyMs: number }).copyMs;
    expect(copyMs).toBeLessThan((0.85 * 1000 * image.size) / (READ_MIBPS * MiB));
    expect(conductor.logs().filter((l) => l.msg === 'a holder was dropped from a copy')).toEqual([]);
    expect(errorLines([conductor])).toEqual([]);
    console.log(
      `copy-several-holders: ${JSON.stringify({ case: 'three holders', copyMs, source: reply.source })}`,
    );
  });

  it('drops a holder whose pieces do not match the list and completes from the others', async () => {
    const c = bed.cell!;
    const image = await seedHolders(c, 32 * MiB);
    const corrupt = HOLDERS[1]!;
    await corruptEveryPiece(c, corrupt, image.size);
    watchFinalPath(image);
    const conductor = await ConductorProcess.start(bed.pool, conductorEnv(c, 'several-b'), 60_000).ready();

    const reply = await bed.client!.finalReply(request('req-corrupt', image), 45_000);
    // The same attempt completed: the corrupt piece was caught before it was written, not by the final
    // whole-image check (which would fail the attempt, CHECKSUM_MISMATCH).
    expect(reply).toMatchObject({ status: 'completed', attempt: 1, bytes: image.size, sha256: image.sha256 });
    const [several] = severalHolderLines(conductor);
    expect(holdersRead(several!)).toEqual(HOLDERS);
    const dropped = conductor.logs().filter((l) => l.msg === 'a holder was dropped from a copy');
    expect(dropped).toHaveLength(1);
    expect(dropped[0]).toMatchObject({
      node: corrupt,
      why: expect.stringMatching(/^piece \d+ read from node node-b has sha256/),
    });
    await expectVerifiedDestination(image);
    expect(await heldLockEntries(c.root)).toEqual([]);
    expect(await c.tmpLeftovers()).toEqual([]);
    expect(errorLines([conductor])).toEqual([]);
    console.log(
      `copy-several-holders: ${JSON.stringify({ case: 'corrupt holder', why: dropped[0]!.why, source: reply.source })}`,
    );
  });

  it('a conductor SIGKILLed mid-copy: the next one resumes from the checkpoint, answers once, and the dead one leaves nothing', async () => {
    const c = bed.cell!;
    const image = await seedHolders(c, 64 * MiB);
    const finalPath = c.store.entries.imagePath(DESTINATION, IMAGE);
    watchFinalPath(image);
    progress = await ProgressTap.open(c.topology, DESTINATION);
    const first = await ConductorProcess.start(bed.pool, conductorEnv(c, 'several-c1'), 60_000).ready();
    const correlationId = request('req-killed', image);

    // Past the first checkpoint (every 32 MiB; a progress event comes after its checkpoint is recorded),
    // with half the image still to read at 12 MiB/s: kill it there.
    const checkpoint = 32 * MiB;
    const killedAt = await waitFor(
      () => (progress!.bytesDone('req-killed') >= checkpoint ? progress!.bytesDone('req-killed') : 0),
      'progress past the first checkpoint',
      30_000,
    );
    first.signal('SIGKILL');
    const killedMs = performance.now();
    expect(await first.exited()).toMatchObject({ signal: 'SIGKILL' });
    expect(holdersRead(severalHolderLines(first)[0]!)).toEqual(HOLDERS);
    expect(killedAt).toBeLessThan(image.size);
    expect(await exists(finalPath)).toBe(false);
    // The dead conductor's entries: the destination's exclusive lock and a shared one on each holder.
    const entries = await lockLeftovers(c.root);
    expect(entries.map((e) => `${e.node} ${e.mode} ${e.conductorId}`).sort()).toEqual([
      ...HOLDERS.map((node) => `${node} shared several-c1`),
      `${DESTINATION} exclusive several-c1`,
    ]);

    const second = await ConductorProcess.start(bed.pool, conductorEnv(c, 'several-c2'), 60_000).ready();
    const reply = await bed.client!.finalReply(correlationId, 45_000);
    const killToAnswerMs = Math.round(performance.now() - killedMs);
    expect(reply).toMatchObject({
      status: 'completed',
      conductorId: 'several-c2',
      bytes: image.size,
      sha256: image.sha256,
    });
    const [answered] = await answersLogged([second], ['req-killed']);
    expect(answered!.resumedBytes ?? 0, 'bytes resumed from the checkpoint').toBeGreaterThanOrEqual(
      checkpoint,
    );
    expect(holdersRead(severalHolderLines(second)[0]!)).toEqual(HOLDERS);
    await expectVerifiedDestination(image);
    expect(await c.tmpLeftovers()).toEqual([]);
    // The dead attempt's entries go once they have been stale for LOCK_STALE_MS (2 s), at the next sweep.
    await until(
      async () => ((await heldLockEntries(c.root)).length === 0 ? true : undefined),
      'the dead conductor lock entries collected',
      20_000,
      100,
    );
    const killToLocksGoneMs = Math.round(performance.now() - killedMs);
    // Still one answer: nothing else arrived while the entries were collected.
    expect(bed.client!.replies.filter((r) => r.correlationId === correlationId)).toHaveLength(1);
    expect(errorLines([second])).toEqual([]);
    console.log(
      `copy-several-holders: ${JSON.stringify({ case: 'killed', killedAt, resumedBytes: answered!.resumedBytes, killToAnswerMs, killToLocksGoneMs })}`,
    );
  });
});
