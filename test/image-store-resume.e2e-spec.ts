import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, onTestFailed } from 'vitest';
import { DEFAULT_RESUME_CHECKPOINT_BYTES, ImageStore } from '@app/image-store';
import { ChildProcessPool } from './support/child-processes';
import { compiledCopyChild } from './support/compiled-copy-child';
import type { CopyChildArgs } from './support/image-store-copy-child';
import { MEBIBYTE, listDir, sha256OfFile, writeRandomFile } from './support/image-store-fixtures';
import { makeTempDir, removeDir } from './support/temp-dirs';

const IMAGE = 'ubuntu-24.04.qcow2';
const SIZE = 512 * MEBIBYTE;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface ChildResult {
  ok: boolean;
  outcome: { status: string; sha256: string; bytes: number; resumedBytes: number };
}

describe('a copy SIGKILLed half-way is resumed by the next attempt', () => {
  const pool = new ChildProcessPool<never>();
  let root: string;
  let store: ImageStore;
  let sha256: string;
  let tmp: string;

  beforeEach(async () => {
    root = await makeTempDir('image-store-resume');
    store = new ImageStore({ root });
    for (const node of ['node-a', 'node-b']) await store.markers.registerNode(node, 'image-store-resume');
    const staging = path.join(root, 'staging.img');
    sha256 = await writeRandomFile(staging, SIZE);
    await store.imports.importImage('node-a', IMAGE, staging);
    await fsp.rm(staging);
    tmp = store.nodeLayout('node-b').tmp;
  });

  afterEach(async () => {
    await pool.killAll();
    await removeDir(root);
  });

  const args = (attemptId: string, extra: Partial<CopyChildArgs> = {}): CopyChildArgs => ({
    root,
    imageId: IMAGE,
    source: 'node-a',
    destination: 'node-b',
    attemptId,
    resume: true,
    countSourceReadsTo: path.join(root, `${attemptId}.reads`),
    ...extra,
  });
  const sourceReads = async (attemptId: string) =>
    Number(await fsp.readFile(path.join(root, `${attemptId}.reads`), 'utf8'));

  /** Starts attempt-1 slowed past half-way, SIGKILLs it once its record verifies half of the image. */
  async function killedAtHalf(): Promise<number> {
    const child = pool.fork(
      compiledCopyChild(),
      [JSON.stringify(args('attempt-1', { slowAfterBytes: SIZE / 2, slowMsPerChunk: 25 }))],
      { hardTimeoutMs: 90_000 },
    );
    const record = path.join(tmp, `${IMAGE}~attempt-1.origin.part`);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const verified = await fsp
        .readFile(record, 'utf8')
        .then((text) => (JSON.parse(text) as { verified?: { bytes: number } }).verified?.bytes ?? 0)
        .catch(() => 0); // not written yet, or caught mid-rename
      if (verified >= SIZE / 2) break;
      if (child.process.exitCode !== null) throw new Error(`attempt-1 exited early:\n${pool.report()}`);
      if (Date.now() > deadline) throw new Error(`attempt-1 did not reach half-way:\n${pool.report()}`);
      await sleep(5);
    }
    child.process.kill('SIGKILL');
    expect(await child.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(await store.copies.verifiedImage('node-b', IMAGE)).toBeUndefined();
    const verified = (JSON.parse(await fsp.readFile(record, 'utf8')) as { verified: { bytes: number } })
      .verified.bytes;
    const readByFirst = await sourceReads('attempt-1');
    expect(readByFirst).toBeGreaterThanOrEqual(verified);
    expect(readByFirst).toBeLessThan(SIZE);
    return verified;
  }

  async function secondAttempt(): Promise<{ outcome: ChildResult['outcome']; output: string }> {
    const child = pool.fork(compiledCopyChild(), [JSON.stringify(args('attempt-2'))], {
      hardTimeoutMs: 90_000,
    });
    expect(await child.exited).toEqual({ code: 0, signal: null });
    const output = child.output.join('');
    // stdout has the outcome line; stderr (warnings) is interleaved in the same record.
    const line = output.split('\n').find((l) => l.startsWith('{"ok"'));
    expect(line, output).toBeDefined();
    const result = JSON.parse(line!) as ChildResult;
    expect(result.ok).toBe(true);
    expect(await sha256OfFile(store.entries.imagePath('node-b', IMAGE))).toBe(sha256);
    expect(await store.copies.verifiedImage('node-b', IMAGE, { sha256, size: SIZE })).toMatchObject({
      attemptId: 'attempt-2',
    });
    expect(await listDir(tmp)).toEqual([]);
    return { outcome: result.outcome, output };
  }

  it('reads only the rest of the image from the source, and the image verifies', async () => {
    onTestFailed(() => console.error(`copy children output:\n${pool.report()}`));
    const verified = await killedAtHalf();
    // Checkpoints land every DEFAULT_RESUME_CHECKPOINT_BYTES: the kill came within one of half-way.
    expect(verified).toBeLessThan(SIZE / 2 + 2 * DEFAULT_RESUME_CHECKPOINT_BYTES);

    const { outcome } = await secondAttempt();

    expect(outcome).toMatchObject({ status: 'copied', sha256, resumedBytes: verified });
    expect(outcome.bytes).toBe(SIZE - verified);
    expect(await sourceReads('attempt-2')).toBe(SIZE - verified);
  });

  it('discards a partial whose bytes were changed after the kill, and copies from zero', async () => {
    onTestFailed(() => console.error(`copy children output:\n${pool.report()}`));
    await killedAtHalf();
    const partial = await fsp.open(path.join(tmp, `${IMAGE}~attempt-1.part`), 'r+');
    await partial.write(Buffer.from('not the image'), 0, 13, 100 * MEBIBYTE);
    await partial.close();

    const { outcome, output } = await secondAttempt();

    expect(outcome).toMatchObject({ status: 'copied', sha256, resumedBytes: 0, bytes: SIZE });
    expect(output).toMatch(/attempt-1\.part is not resumed .*do not have the sha256 its record names/);
    expect(await sourceReads('attempt-2')).toBe(SIZE);
  });
});
