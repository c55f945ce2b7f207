import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import { ImageStore } from '@app/image-store';
import { ChildProcessPool } from './support/child-processes';
import { compiledCopyChild } from './support/compiled-copy-child';
import type { CopyChildArgs } from './support/image-store-copy-child';
import { MEBIBYTE, exists, listDir, sha256OfFile, writeRandomFile } from './support/image-store-fixtures';
import { makeTempDir, removeDir } from './support/temp-dirs';
import { sleep } from './support/async';

const IMAGE = 'ubuntu-24.04.qcow2';
const SIZE = 256 * MEBIBYTE;

async function sizeOf(file: string): Promise<number> {
  try {
    return (await fsp.stat(file)).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

describe('a copy process SIGKILLed half-way', () => {
  const pool = new ChildProcessPool<never>();
  let root: string;
  let store: ImageStore;

  beforeEach(async () => {
    root = await makeTempDir('image-store-kill');
    store = new ImageStore({ root });
    for (const node of ['node-a', 'node-b']) await store.markers.registerNode(node, 'image-store-kill');
  });

  afterEach(async () => {
    await pool.killAll();
    await removeDir(root);
  });

  it('publishes nothing, leaves a partial copy that removeLeftoverTmp clears, and a new copy then succeeds', async () => {
    onTestFailed(() => {
      console.error(`copy child output:\n${pool.report()}`);
    });
    const childScript = compiledCopyChild();
    const staging = path.join(root, 'staging.img');
    const sha256 = await writeRandomFile(staging, SIZE);
    await store.imports.importImage('node-a', IMAGE, staging);
    await fsp.rm(staging);

    const args: CopyChildArgs = {
      root,
      imageId: IMAGE,
      source: 'node-a',
      destination: 'node-b',
      attemptId: 'attempt-1',
      slowAfterBytes: SIZE / 2,
      slowMsPerChunk: 25,
    };
    const child = pool.fork(childScript, [JSON.stringify(args)], { hardTimeoutMs: 60_000 });
    const partial = path.join(store.nodeLayout('node-b').tmp, `${IMAGE}~attempt-1.part`);

    // Watch the partial copy grow on disk, then kill the process without warning.
    const deadline = Date.now() + 45_000;
    while ((await sizeOf(partial)) < SIZE / 2) {
      if (child.process.exitCode !== null) {
        throw new Error(`the copy child exited before half-way:\n${pool.report()}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`the partial copy did not reach half-way in time:\n${pool.report()}`);
      }
      await sleep(5);
    }
    child.process.kill('SIGKILL');
    expect(await child.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(child.output.join('')).not.toContain('"ok":true');

    // Nothing published; the dead attempt's partial copy is all that is left.
    const leftover = await sizeOf(partial);
    expect(leftover).toBeGreaterThanOrEqual(SIZE / 2);
    expect(leftover).toBeLessThan(SIZE);
    expect(await exists(store.entries.imagePath('node-b', IMAGE))).toBe(false);
    expect(await exists(store.entries.metaPath('node-b', IMAGE))).toBe(false);
    expect(await store.copies.verifiedImage('node-b', IMAGE)).toBeUndefined();
    expect(await store.entries.listImages('node-b')).toEqual([]);
    // The partial and its record (what it is a partial of, for a resuming copy).
    expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([
      `${IMAGE}~attempt-1.origin.part`,
      `${IMAGE}~attempt-1.part`,
    ]);
    expect(await store.copies.verifiedImage('node-a', IMAGE, { sha256, size: SIZE })).toBeDefined();

    expect(await store.entries.removeLeftoverTmp('node-b', IMAGE)).toBe(2);
    expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([]);

    const outcome = await store.copies.copyImage({
      imageId: IMAGE,
      source: 'node-a',
      destination: 'node-b',
      attemptId: 'attempt-2',
      expected: { sha256, size: SIZE },
    });
    expect(outcome).toMatchObject({ status: 'copied', bytes: SIZE, sha256 });
    expect(await sha256OfFile(store.entries.imagePath('node-b', IMAGE))).toBe(sha256);
    expect(await store.copies.verifiedImage('node-b', IMAGE, { sha256, size: SIZE })).toMatchObject({
      attemptId: 'attempt-2',
    });
    expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([]);
  });

  it('a copy process that is not killed publishes the verified image (the child itself works)', async () => {
    onTestFailed(() => {
      console.error(`copy child output:\n${pool.report()}`);
    });
    const childScript = compiledCopyChild();
    const staging = path.join(root, 'staging.img');
    const sha256 = await writeRandomFile(staging, 8 * MEBIBYTE + 3);
    await store.imports.importImage('node-a', IMAGE, staging);

    const args: CopyChildArgs = {
      root,
      imageId: IMAGE,
      source: 'node-a',
      destination: 'node-b',
      attemptId: 'a-1',
    };
    const child = pool.fork(childScript, [JSON.stringify(args)], { hardTimeoutMs: 30_000 });

    expect(await child.exited).toEqual({ code: 0, signal: null });
    const result = JSON.parse(child.output.join('')) as {
      ok: boolean;
      outcome: { status: string; sha256: string };
    };
    expect(result).toMatchObject({ ok: true, outcome: { status: 'copied', sha256 } });
    expect(await store.copies.verifiedImage('node-b', IMAGE, { sha256 })).toBeDefined();
  });
});
