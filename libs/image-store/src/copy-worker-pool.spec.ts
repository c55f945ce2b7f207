import { createHash } from 'node:crypto';
import { existsSync, promises as fsp, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isReasonError } from '@app/contracts';
import {
  MEBIBYTE,
  pieceDigestsOfFile,
  rejectionOf,
  sha256OfFile,
} from '../../../test/support/image-store-fixtures';
import { CopyPipeline, type CopyImageRequest } from './copy-pipeline';
import { CopyWorkerPool } from './copy-worker-pool';
import { type ChunkIo, PrefixMismatchError, type StreamCopyOptions, copyChunks } from './image-copier';
import { pieceBytesFor } from './piece-list';
import { StoreContext } from './store-context';
import { IMAGE, useStoreFixture } from './store.fixture';

const CRASHING_SCRIPT = path.resolve(
  __dirname,
  '../../../dist/libs/image-store/src/copy-worker-crash.fixture.js',
);

describe('CopyWorkerPool', () => {
  const fx = useStoreFixture();
  let pool: CopyWorkerPool;
  let copies: CopyPipeline;
  const usePool = (script?: string) => {
    pool = new CopyWorkerPool({ size: 2, script });
    copies = new CopyPipeline(
      new StoreContext({ root: fx.root, onWarning: (message) => fx.warnings.push(message) }, pool),
    );
  };
  const copy = (overrides: Partial<CopyImageRequest> = {}) =>
    copies.copyImage({
      imageId: IMAGE,
      source: 'node-a',
      destination: 'node-b',
      attemptId: `attempt-${Math.random().toString(36).slice(2)}`,
      ...overrides,
    });

  beforeEach(() => usePool());
  afterEach(async () => {
    await pool.close();
    delete process.env.ICC_COPY_WORKER_CRASH_MARKER;
  });

  it('gives the digest node:crypto gives, for sizes around the chunk size, several copies at once', async () => {
    const sizes = [0, 1, 4095, MEBIBYTE - 1, MEBIBYTE, MEBIBYTE + 1, 2 * MEBIBYTE + 3, 5 * MEBIBYTE - 7];
    const seeded = await Promise.all(sizes.map((size) => fx.seed('node-a', size, `image-${size}`)));
    const outcomes = await Promise.all(sizes.map((size) => copy({ imageId: `image-${size}` })));
    expect(pool.threads).toBe(2);
    for (const [index, size] of sizes.entries()) {
      const published = fx.store.entries.imagePath('node-b', `image-${size}`);
      expect(outcomes[index]).toMatchObject({ status: 'copied', bytes: size, sha256: seeded[index] });
      expect(await sha256OfFile(published)).toBe(seeded[index]);
      // The pieces hashed in the worker came back with the digest and were recorded.
      expect((await copies.readPieceList('node-b', `image-${size}`)).list?.pieces).toEqual(
        await pieceDigestsOfFile(published, pieceBytesFor(size)!),
      );
    }
    expect(outcomes[0].sha256).toBe(createHash('sha256').digest('hex'));
  });

  it('stops its worker on abort mid-copy, and the same worker serves the next copy', async () => {
    const sha256 = await fx.seed('node-a', 64 * MEBIBYTE);
    const partial = path.join(fx.root, 'partial');
    const from = await fsp.open(fx.store.entries.imagePath('node-a', IMAGE), 'r');
    const to = await fsp.open(partial, 'w');
    const controller = new AbortController();
    const seen: number[] = [];
    try {
      const error = await rejectionOf(
        pool.copy({
          from,
          to,
          signal: controller.signal,
          onProgress: (done) => {
            seen.push(done);
            if (done >= 8 * MEBIBYTE) controller.abort();
          },
          readError: (e) => e,
          writeError: (e) => e,
          describe: 'abort mid-copy',
        }),
      );
      expect(error).toBe(controller.signal.reason);
      expect(seen.at(-1)).toBeLessThan(64 * MEBIBYTE);
      // The copy settles once its worker has stopped: what it wrote stays as it is, well short of the image.
      const written = (await to.stat()).size;
      expect(written).toBeLessThan(32 * MEBIBYTE);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect((await to.stat()).size).toBe(written);
    } finally {
      await from.close();
      await to.close();
    }

    expect(await copy()).toMatchObject({ status: 'copied', sha256 });
    expect(pool.threads).toBe(1);
  });

  it('continues a resumed prefix, waits for each checkpoint save, and asks the pace for every chunk', async () => {
    const size = 7 * MEBIBYTE + 11;
    const source = Buffer.alloc(size);
    for (let i = 0; i < size; i += 1) source[i] = (i * 2654435761) >>> 24;
    const sourcePath = path.join(fx.root, 'source');
    const partial = path.join(fx.root, 'partial');
    writeFileSync(sourcePath, source);
    const prefix = 3 * MEBIBYTE;
    writeFileSync(partial, source.subarray(0, prefix));
    const sha256Of = (bytes: number) => createHash('sha256').update(source.subarray(0, bytes)).digest('hex');
    const from = await fsp.open(sourcePath, 'r');
    const to = await fsp.open(partial, 'r+');
    const saved: Array<[number, string]> = [];
    const paced = { read: 0, written: 0 };
    let release!: () => void;
    const firstSaveHeld = new Promise<void>((resolve) => (release = resolve));
    let firstSaveAsked!: () => void;
    const firstSave = new Promise<void>((resolve) => (firstSaveAsked = resolve));
    const resumedCopy = (describe: string, extra: Partial<StreamCopyOptions> = {}) =>
      pool.copy({
        from,
        to,
        readError: (e) => e,
        writeError: (e) => e,
        describe,
        start: {
          bytes: prefix,
          sha256: createHash('sha256').update(source.subarray(0, prefix)).digest('hex'),
        },
        // Pieces of 2 MiB: the prefix ends inside one, which the worker goes on hashing.
        pieceBytes: 2 * MEBIBYTE,
        ...extra,
      });
    try {
      const copying = resumedCopy('resumed copy', {
        checkpoint: {
          everyBytes: 2 * MEBIBYTE,
          save: async (bytes, prefixSha256) => {
            saved.push([bytes, prefixSha256]);
            if (saved.length === 1) {
              firstSaveAsked();
              await firstSaveHeld;
            }
          },
        },
        pace: {
          afterRead: async (bytes) => {
            paced.read += bytes;
          },
          beforeWrite: async (bytes) => {
            paced.written += bytes;
          },
        },
      });
      await Promise.race([
        firstSave,
        copying.then(() => {
          throw new Error('the copy ended without asking for a checkpoint');
        }),
      ]);
      // While the main thread has not saved the checkpoint, the worker writes nothing past it.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect((await to.stat()).size).toBe(5 * MEBIBYTE);
      release();

      expect(await copying).toEqual({
        bytes: size,
        sha256: sha256Of(size),
        pieces: await pieceDigestsOfFile(sourcePath, 2 * MEBIBYTE),
      });
      expect(saved).toEqual([
        [5 * MEBIBYTE, sha256Of(5 * MEBIBYTE)],
        [7 * MEBIBYTE, sha256Of(7 * MEBIBYTE)],
      ]);
      expect(paced).toEqual({ read: size - prefix, written: size - prefix });
      expect((await fsp.readFile(partial)).equals(source)).toBe(true);

      // A prefix that does not re-hash to its record is not continued: the worker says so, and the
      // caller (publishImage) starts from zero.
      await to.write(Buffer.from('lie'), 0, 3, 5);
      const error = await rejectionOf(resumedCopy('changed prefix'));
      expect(error).toBeInstanceOf(PrefixMismatchError);
      expect((error as Error).message).toContain('changed prefix: the first 3145728 bytes');
    } finally {
      release();
      await from.close();
      await to.close();
    }
  });

  it('settles an aborted copy only after the checkpoint save under way has ended (no record lands after a discard)', async () => {
    await fx.seed('node-a', 16 * MEBIBYTE);
    const from = await fsp.open(fx.store.entries.imagePath('node-a', IMAGE), 'r');
    const to = await fsp.open(path.join(fx.root, 'partial'), 'w');
    const controller = new AbortController();
    const events: string[] = [];
    let finishSave!: () => void;
    const saveHeld = new Promise<void>((resolve) => (finishSave = resolve));
    let saveAsked!: () => void;
    const asked = new Promise<void>((resolve) => (saveAsked = resolve));
    try {
      const copying = pool
        .copy({
          from,
          to,
          signal: controller.signal,
          readError: (e) => e,
          writeError: (e) => e,
          describe: 'abort during a checkpoint',
          checkpoint: {
            everyBytes: 4 * MEBIBYTE,
            save: async () => {
              saveAsked();
              await saveHeld;
              events.push('save ended');
            },
          },
        })
        .then(
          () => events.push('copy resolved'),
          () => events.push('copy rejected'),
        );
      await asked;
      controller.abort(); // the shutdown's grace period ran out while the record was being written
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(events).toEqual([]);
      finishSave();
      await copying;
      expect(events).toEqual(['save ended', 'copy rejected']);
    } finally {
      finishSave();
      await from.close();
      await to.close();
    }
  });

  it('fails the copy with INTERNAL when its worker dies, publishes nothing, and replaces the worker', async () => {
    if (!existsSync(CRASHING_SCRIPT))
      throw new Error(`${CRASHING_SCRIPT} is missing: run npm run build first`);
    await pool.close();
    const marker = path.join(fx.root, 'crash-marker');
    writeFileSync(marker, '');
    process.env.ICC_COPY_WORKER_CRASH_MARKER = marker;
    usePool(CRASHING_SCRIPT);
    const sha256 = await fx.seed('node-a', 16 * MEBIBYTE);
    const progress: number[] = [];

    const error = await rejectionOf(copy({ onProgress: (done) => progress.push(done) }));

    expect(isReasonError(error) && error.code).toBe('INTERNAL');
    expect((error as Error).message).toContain('copy worker thread died (copy worker crashed on purpose');
    expect(existsSync(marker)).toBe(false);
    expect(progress.at(-1) ?? 0).toBeLessThan(16 * MEBIBYTE);
    expect(pool.threads).toBe(0);
    await fx.expectNothingAtDestination();

    expect(await copy()).toMatchObject({ status: 'copied', sha256 });
    expect(pool.threads).toBe(1);
    expect(await fsp.readdir(fx.store.nodeLayout('node-b').tmp)).toEqual([]);
  });
});

describe('copyChunks', () => {
  it('fails with the read error when a read ahead fails while a write is under way, and leaves no unhandled rejection', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let reads = 0;
      let releaseWrite!: () => void;
      const writeHeld = new Promise<void>((resolve) => (releaseWrite = resolve));
      const io: ChunkIo = {
        // The first read delivers a chunk; the one started ahead of its write fails at once (a dead mount).
        read: async (buffer) => {
          if (reads++ === 0) return buffer.fill(1).length;
          throw Object.assign(new Error('ENOTCONN: socket is not connected'), { code: 'ENOTCONN' });
        },
        write: async (_buffer, _offset, length) => {
          await writeHeld;
          return length;
        },
      };
      const copying = copyChunks({
        io,
        readError: (error) => error as Error,
        writeError: (error) => error as Error,
        describe: 'a copy from a dead mount',
      });
      // Let the failed read settle unawaited, as it does while the write waits on the file system.
      await new Promise((resolve) => setTimeout(resolve, 20));
      releaseWrite();
      await expect(copying).rejects.toMatchObject({ code: 'ENOTCONN' });
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('hashes like node:crypto whatever the lengths reads and writes return', async () => {
    const source = Buffer.alloc(3 * MEBIBYTE + 17);
    for (let i = 0; i < source.length; i += 1) source[i] = (i * 2654435761) >>> 24;
    const target = Buffer.alloc(source.length);
    let calls = 0;
    // Short reads and writes of changing, odd lengths, as a network file system may return them.
    const odd = () => 1 + ((calls++ * 7919) % 300_007);
    const io: ChunkIo = {
      read: async (buffer, position) =>
        source.copy(buffer, 0, position, position + Math.min(buffer.length, odd())),
      write: async (buffer, offset, length, position) => {
        const n = Math.min(length, odd());
        buffer.copy(target, position, offset, offset + n);
        return n;
      },
    };
    const result = await copyChunks({
      io,
      readError: (error) => error,
      writeError: (error) => error,
      describe: 'odd chunks',
    });
    expect(result).toEqual({
      bytes: source.length,
      sha256: createHash('sha256').update(source).digest('hex'),
    });
    expect(target.equals(source)).toBe(true);
    expect(calls).toBeGreaterThan(40);
  });
});
