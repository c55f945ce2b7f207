import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  MEBIBYTE,
  listDir,
  pieceDigestsOfFile,
  sha256OfFile,
} from '../../../test/support/image-store-fixtures';
import type { CopyImageRequest } from './copy-pipeline';
import { ImageStore } from './image-store';
import { pieceBytesFor } from './piece-list';
import { IMAGE, useStoreFixture } from './store.fixture';

const SIZE = 8 * MEBIBYTE + 321;

// The same on the main thread and in copy workers (which re-hash the prefix, and ask the main thread for
// checkpoints and caps).
describe.each([
  ['on the main thread', 0],
  ['in copy workers', 2],
])('resumable partial copies, %s', (_where, copyWorkers) => {
  const fx = useStoreFixture();
  let store: ImageStore;
  let sha256: string;
  let tmp: string;
  beforeEach(async () => {
    // Checkpoints every MiB, so that a small image has several.
    store = new ImageStore({
      root: fx.root,
      resumeCheckpointBytes: MEBIBYTE,
      copyWorkers,
      onWarning: (message) => fx.warnings.push(message),
    });
    sha256 = await fx.seed('node-a', SIZE);
    tmp = store.nodeLayout('node-b').tmp;
  });

  const request = (overrides: Partial<CopyImageRequest>): CopyImageRequest => ({
    imageId: IMAGE,
    source: 'node-a',
    destination: 'node-b',
    attemptId: 'attempt-1',
    ...overrides,
  });

  /** Bytes read from the source by one copy, counted where they are read. */
  async function copyCountingReads(overrides: Partial<CopyImageRequest>) {
    let read = 0;
    const outcome = await store.copies.copyImage(
      request({
        pace: {
          afterRead: async (bytes) => {
            read += bytes;
          },
          beforeWrite: async () => {},
        },
        ...overrides,
      }),
    );
    return { outcome, read };
  }

  let thaw: (() => void) | undefined;
  let frozenCopy: Promise<unknown> | undefined;
  afterEach(async () => {
    thaw?.();
    await frozenCopy;
    thaw = undefined;
    frozenCopy = undefined;
    await store.close();
  });

  /**
   * A first attempt frozen for good once `stopAt` bytes were written, like a killed process: its partial
   * and record stay as they were. (At the end of the test it is failed, and removes only its own files.)
   */
  async function deadAttempt(stopAt: number): Promise<void> {
    let reached!: () => void;
    const frozen = new Promise<void>((resolve) => (reached = resolve));
    const copying = store.copies.copyImage(
      request({
        attemptId: 'attempt-1',
        onProgress: (done) => {
          if (done >= stopAt) reached();
        },
        pace: {
          afterRead: async () => {},
          beforeWrite: (_bytes, _signal) =>
            new Promise<void>((resolve, reject) => {
              if (thaw === undefined && !frozenNow()) return resolve();
              thaw = () => reject(new Error('thawed at the end of the test'));
            }),
        },
      }),
    );
    let writes = 0;
    const frozenNow = () => ++writes > stopAt / MEBIBYTE;
    frozenCopy = copying.catch(() => {});
    await frozen;
    expect(await listDir(tmp)).toEqual([`${IMAGE}~attempt-1.origin.part`, `${IMAGE}~attempt-1.part`]);
  }

  const recordPath = () => path.join(tmp, `${IMAGE}~attempt-1.origin.part`);
  const partialPath = () => path.join(tmp, `${IMAGE}~attempt-1.part`);

  it('continues a dead attempt from its last checkpoint, reading only the rest from the source', async () => {
    await deadAttempt(4 * MEBIBYTE);
    const record = JSON.parse(await fsp.readFile(recordPath(), 'utf8'));
    expect(record).toMatchObject({ imageId: IMAGE, sha256, size: SIZE, verified: { bytes: 4 * MEBIBYTE } });

    const { outcome, read } = await copyCountingReads({ attemptId: 'attempt-2', resume: true });

    expect(outcome.status).toBe('copied');
    expect(outcome.resumedBytes).toBe(4 * MEBIBYTE);
    expect(outcome.bytes).toBe(SIZE - 4 * MEBIBYTE);
    expect(read).toBe(SIZE - 4 * MEBIBYTE);
    expect(await sha256OfFile(store.entries.imagePath('node-b', IMAGE))).toBe(sha256);
    expect(outcome.meta).toMatchObject({ sha256, size: SIZE, attemptId: 'attempt-2' });
    expect(await listDir(tmp)).toEqual([]);
    // The pieces of the adopted prefix were hashed while it was re-hashed: the list covers every byte.
    expect((await store.copies.readPieceList('node-b', IMAGE)).list?.pieces).toEqual(
      await pieceDigestsOfFile(store.entries.imagePath('node-b', IMAGE), pieceBytesFor(SIZE)!),
    );
  });

  it('re-hashes the prefix it continues once, where the copy runs', async () => {
    await deadAttempt(4 * MEBIBYTE);
    // Reads through file handles on this thread: a copy worker's reads (of the source and of the prefix)
    // do not show here, the main thread's do.
    const probe = await fsp.open(partialPath(), 'r');
    const prototype = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<unknown> };
    await probe.close();
    const read = vi.spyOn(prototype, 'read');
    try {
      const { outcome } = await copyCountingReads({ attemptId: 'attempt-2', resume: true });
      expect(outcome.resumedBytes).toBe(4 * MEBIBYTE);
      // Chunk reads (1 MiB buffers; small JSON files are read with others). The adoption copies the prefix
      // (4 chunks) into a partial of its own, always on this thread. Then the copier re-hashes it (4) and
      // reads the rest of the source (with its end-of-file read): here on the main thread, else in a worker.
      const chunkReads = read.mock.calls.filter((args) => (args[0] as Buffer).length === MEBIBYTE).length;
      const rest = Math.ceil((SIZE - 4 * MEBIBYTE) / MEBIBYTE) + 1;
      expect(chunkReads).toBe(copyWorkers ? 4 : 4 + 4 + rest);
    } finally {
      read.mockRestore();
    }
  });

  const lateBytes = Buffer.from('late bytes of a writer that lost its lock');
  it.each([
    // An attempt that had itself adopted this partial and was paused before it cut it to its checkpoint.
    ['its cut to an older checkpoint', (theirs: FileHandle) => theirs.truncate(MEBIBYTE)],
    [
      'a write into the adopted prefix',
      (theirs: FileHandle) => theirs.write(lateBytes, 0, lateBytes.length, MEBIBYTE + 5),
    ],
    [
      'a write past the prefix',
      (theirs: FileHandle) => theirs.write(lateBytes, 0, lateBytes.length, 6 * MEBIBYTE),
    ],
  ])("never publishes what a dead attempt's open file does after the take-over: %s", async (_what, late) => {
    await deadAttempt(4 * MEBIBYTE);
    // The dead attempt's descriptor: a paused or partitioned holder still has it, and what it issued
    // before the pause lands whenever it runs again, whoever owns the partial's name by then.
    const theirs = await fsp.open(partialPath(), 'r+');
    try {
      const outcome = await store.copies.copyImage(
        request({
          attemptId: 'attempt-2',
          resume: true,
          // After every check that hashes the partial: only a partial of its own keeps it out.
          beforeIrreversibleStep: async (step) => {
            if (step === 'publish') await late(theirs);
          },
        }),
      );
      expect(outcome.resumedBytes).toBe(4 * MEBIBYTE);
      expect(await sha256OfFile(store.entries.imagePath('node-b', IMAGE))).toBe(sha256);
    } finally {
      await theirs.close();
    }
    expect(await listDir(tmp)).toEqual([]);
  });

  it('discards a partial whose bytes were changed and copies from zero', async () => {
    await deadAttempt(4 * MEBIBYTE);
    const handle = await fsp.open(partialPath(), 'r+');
    await handle.write(Buffer.from('lie'), 0, 3, MEBIBYTE + 5);
    await handle.close();

    const { outcome, read } = await copyCountingReads({ attemptId: 'attempt-2', resume: true });

    expect(outcome.resumedBytes).toBe(0);
    expect(read).toBe(SIZE);
    expect(await sha256OfFile(store.entries.imagePath('node-b', IMAGE))).toBe(sha256);
    expect(fx.warnings.splice(0)).toEqual([
      expect.stringMatching(/attempt-1\.part is not resumed .*first 4194304 bytes do not have the sha256/),
    ]);
    expect(await listDir(tmp)).toEqual([]);
  });

  it('discards a partial whose record is for another checksum', async () => {
    await deadAttempt(4 * MEBIBYTE);
    const record = JSON.parse(await fsp.readFile(recordPath(), 'utf8'));
    await fsp.writeFile(recordPath(), JSON.stringify({ ...record, sha256: 'f'.repeat(64) }));

    const { outcome, read } = await copyCountingReads({ attemptId: 'attempt-2', resume: true });

    expect(outcome.resumedBytes).toBe(0);
    expect(read).toBe(SIZE);
    expect(await sha256OfFile(store.entries.imagePath('node-b', IMAGE))).toBe(sha256);
    expect(fx.warnings.splice(0)).toEqual([expect.stringMatching(/it is a partial of sha256 f{64}/)]);
    expect(await listDir(tmp)).toEqual([]);
  });

  it.each([
    ['no record at all (origin unknown)', async () => fsp.rm(recordPath()), undefined],
    [
      'a record naming another image',
      async () => {
        const record = JSON.parse(await fsp.readFile(recordPath(), 'utf8'));
        await fsp.writeFile(recordPath(), JSON.stringify({ ...record, imageId: 'other.qcow2' }));
      },
      /imageId: is "other.qcow2"/,
    ],
    ['a record that is not JSON', async () => fsp.writeFile(recordPath(), '{"v":1,'), /not JSON/],
    [
      'a record verifying more bytes than the partial holds',
      async () => fsp.truncate(partialPath(), 2 * MEBIBYTE),
      /2097152 bytes, fewer than the 4194304 its record verified/,
    ],
  ] as const)('never resumes with %s: copies from zero', async (_name, tamper, warning) => {
    await deadAttempt(4 * MEBIBYTE);
    await tamper();

    const { outcome, read } = await copyCountingReads({ attemptId: 'attempt-2', resume: true });

    expect(outcome.resumedBytes).toBe(0);
    expect(read).toBe(SIZE);
    expect(await sha256OfFile(store.entries.imagePath('node-b', IMAGE))).toBe(sha256);
    expect(fx.warnings.splice(0)).toEqual(warning ? [expect.stringMatching(warning)] : []);
    expect(await listDir(tmp)).toEqual([]);
  });

  it("leaves another image's partial alone: neither read, nor warned about, nor removed", async () => {
    // Another image's copy to the same node, in flight under its own lock: its record and partial.
    const other = 'other.qcow2';
    const otherRecord = path.join(tmp, `${other}~attempt-9.origin.part`);
    const otherPartial = path.join(tmp, `${other}~attempt-9.part`);
    await fsp.mkdir(tmp, { recursive: true });
    const record = { v: 1, imageId: other, attemptId: 'attempt-9', sha256: 'e'.repeat(64), size: SIZE };
    await fsp.writeFile(otherRecord, JSON.stringify({ ...record, createdAt: new Date().toISOString() }));
    await fsp.writeFile(otherPartial, 'partial bytes of another image');

    const { outcome } = await copyCountingReads({ attemptId: 'attempt-2', resume: true });

    expect(outcome.status).toBe('copied');
    expect(fx.warnings).toEqual([]);
    expect(await listDir(tmp)).toEqual([`${other}~attempt-9.origin.part`, `${other}~attempt-9.part`]);
  });

  it('without resume adopts nothing; a failed (not aborted) attempt leaves neither partial nor record', async () => {
    await deadAttempt(4 * MEBIBYTE);
    const { outcome, read } = await copyCountingReads({ attemptId: 'attempt-2' });
    expect(outcome.resumedBytes).toBe(0);
    expect(read).toBe(SIZE);
    // Without resume the caller clears leftovers itself (removeLeftoverTmp): the record goes with them.
    expect(await listDir(tmp)).toEqual([`${IMAGE}~attempt-1.origin.part`, `${IMAGE}~attempt-1.part`]);
    expect(await store.entries.removeLeftoverTmp('node-b', IMAGE)).toBe(2);

    await store.entries.deleteImage('node-b', IMAGE);
    await expect(
      store.copies.copyImage(
        request({
          attemptId: 'attempt-3',
          onProgress: (done) => {
            if (done >= 2 * MEBIBYTE) throw new Error('progress sink failed');
          },
        }),
      ),
    ).rejects.toThrow('progress sink failed');
    expect(await listDir(tmp)).toEqual([]);
  });
});
