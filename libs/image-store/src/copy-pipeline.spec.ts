import { execFileSync } from 'node:child_process';
import { promises as fsp, statSync, truncateSync } from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { ReasonError, InvalidFieldError } from '@app/contracts';
import {
  MEBIBYTE,
  exists,
  listDir,
  rejectionOf,
  sha256OfFile,
} from '../../../test/support/image-store-fixtures';
import type { CopyImageRequest } from './copy-pipeline';
import type { ImageStore } from './image-store';
import { IMAGE, useStoreFixture } from './store.fixture';

describe('CopyPipeline', () => {
  const fx = useStoreFixture();
  const { warnings, seed, copy, expectConductorError, expectNothingAtDestination } = fx;
  let root: string;
  let store: ImageStore;
  beforeEach(() => {
    ({ root, store } = fx);
  });

  describe('copyImage', () => {
    it('streams, verifies and publishes the image with its meta', async () => {
      const size = 3 * MEBIBYTE + 123;
      const sha256 = await seed('node-a', size);
      const progress: Array<[number, number]> = [];
      const irreversibleSteps: string[] = [];

      const outcome = await copy({
        requestId: 'req-42',
        fencingToken: 7,
        onProgress: (done, total) => progress.push([done, total]),
        beforeIrreversibleStep: async (step) => {
          irreversibleSteps.push(step);
          // Before the rename, verified bytes exist only as the partial copy; before the meta, the image is there.
          expect(await exists(store.entries.imagePath('node-b', IMAGE))).toBe(step === 'meta');
        },
      });

      expect(outcome.status).toBe('copied');
      expect(outcome.bytes).toBe(size);
      expect(outcome.sha256).toBe(sha256);
      expect(outcome.copyMs).toBeGreaterThanOrEqual(0);
      expect(irreversibleSteps).toEqual(['publish', 'meta']);
      expect(await sha256OfFile(store.entries.imagePath('node-b', IMAGE))).toBe(sha256);
      expect(progress.map(([done]) => done)).toEqual([MEBIBYTE, 2 * MEBIBYTE, 3 * MEBIBYTE, size]);
      expect(progress.every(([, total]) => total === size)).toBe(true);

      const meta = await store.entries.readMeta('node-b', IMAGE);
      expect(meta).toEqual(outcome.meta);
      expect(meta).toEqual({
        v: 1,
        imageId: IMAGE,
        size,
        sha256,
        createdAt: expect.any(String),
        lastUsedAt: expect.any(String),
        source: { node: 'node-a', requestId: 'req-42' },
        fencingToken: 7,
        attemptId: 'attempt-1',
      });
      expect(meta?.lastUsedAt).toBe(meta?.createdAt);
      expect(Math.abs(Date.parse(meta?.createdAt ?? '') - Date.now())).toBeLessThan(60_000);
      expect(await store.copies.verifiedImage('node-b', IMAGE, { sha256, size })).toEqual(meta);
      expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([]);
      // The source is left exactly as it was.
      expect(await store.copies.verifiedImage('node-a', IMAGE, { sha256 })).toBeDefined();
    });

    it('copies an empty image', async () => {
      const sha256 = await seed('node-a', 0);
      const outcome = await copy();
      expect(outcome).toMatchObject({ status: 'copied', bytes: 0, sha256 });
      expect((await fsp.stat(store.entries.imagePath('node-b', IMAGE))).size).toBe(0);
    });

    it('is a no-op when the destination already holds the verified image', async () => {
      const sha256 = await seed('node-a', 2 * MEBIBYTE);
      await copy();
      const imageBefore = await fsp.stat(store.entries.imagePath('node-b', IMAGE));
      const metaBefore = await fsp.readFile(store.entries.metaPath('node-b', IMAGE), 'utf8');
      const metaStatBefore = await fsp.stat(store.entries.metaPath('node-b', IMAGE));

      const again = await copy({ attemptId: 'attempt-2', expected: { sha256: sha256.toUpperCase() } });

      expect(again.status).toBe('already-present');
      expect(again.bytes).toBe(0);
      expect(again.sha256).toBe(sha256);
      expect(again.meta.attemptId).toBe('attempt-1');
      const imageAfter = await fsp.stat(store.entries.imagePath('node-b', IMAGE));
      expect(imageAfter.ino).toBe(imageBefore.ino);
      expect(imageAfter.mtimeMs).toBe(imageBefore.mtimeMs);
      expect((await fsp.stat(store.entries.metaPath('node-b', IMAGE))).ino).toBe(metaStatBefore.ino);
      expect(await fsp.readFile(store.entries.metaPath('node-b', IMAGE), 'utf8')).toBe(metaBefore);
      expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([]);
    });

    it('answers a redelivery as already present after the source was evicted', async () => {
      await seed('node-a', MEBIBYTE);
      await copy();
      await fsp.rm(store.nodeLayout('node-a').dir, { recursive: true });
      expect((await copy({ attemptId: 'attempt-2' })).status).toBe('already-present');
    });

    it('replaces a verified destination image that differs from the source', async () => {
      const oldSha = await seed('node-b', MEBIBYTE);
      const newSha = await seed('node-a', MEBIBYTE);
      expect(newSha).not.toBe(oldSha);

      const outcome = await copy();

      expect(outcome.status).toBe('copied');
      expect(await sha256OfFile(store.entries.imagePath('node-b', IMAGE))).toBe(newSha);
      expect((await store.entries.readMeta('node-b', IMAGE))?.sha256).toBe(newSha);
    });

    it('refuses a corrupted source (bytes changed, meta kept): CHECKSUM_MISMATCH, nothing published', async () => {
      await seed('node-a', 2 * MEBIBYTE + 5);
      const sourcePath = store.entries.imagePath('node-a', IMAGE);
      const handle = await fsp.open(sourcePath, 'r+');
      await handle.write(Buffer.from('corrupt'), 0, 7, MEBIBYTE + 17);
      await handle.close();

      const error = await expectConductorError(copy(), 'CHECKSUM_MISMATCH');

      expect(error.retryable).toBe(false);
      expect(error.message).toContain('nothing was published');
      await expectNothingAtDestination();
    });

    it('refuses before copying when the request checksum differs from the source meta', async () => {
      await seed('node-a', MEBIBYTE);
      const error = await expectConductorError(
        copy({ expected: { sha256: 'ab'.repeat(32) } }),
        'CHECKSUM_MISMATCH',
      );
      expect(error.message).toContain('nothing was copied');
      await expectNothingAtDestination();
    });

    it('refuses when the request size differs from the source meta: SIZE_MISMATCH', async () => {
      await seed('node-a', MEBIBYTE);
      await expectConductorError(copy({ expected: { size: MEBIBYTE + 1 } }), 'SIZE_MISMATCH');
      await expectNothingAtDestination();
    });

    it('stops as soon as more bytes arrive than expected: SIZE_MISMATCH', async () => {
      await seed('node-a', 4 * MEBIBYTE);
      const sourcePath = store.entries.imagePath('node-a', IMAGE);
      const progress: number[] = [];
      // The file grows after the size checks (a source modified in place, which must never happen).
      const copying = copy({
        onProgress: (done) => {
          if (progress.push(done) === 1) truncateSync(sourcePath, 8 * MEBIBYTE);
        },
      });

      const error = await expectConductorError(copying, 'SIZE_MISMATCH');

      expect(error.message).toContain('more than the expected');
      expect(progress).toEqual([MEBIBYTE, 2 * MEBIBYTE, 3 * MEBIBYTE, 4 * MEBIBYTE]);
      await expectNothingAtDestination();
    });

    it('refuses a source that shrinks during the copy: SIZE_MISMATCH', async () => {
      // Cut well past the reads ahead of the first chunk's write (COPY_BUFFERS - 1 chunks).
      await seed('node-a', 16 * MEBIBYTE);
      const sourcePath = store.entries.imagePath('node-a', IMAGE);
      let truncated = false;
      const copying = copy({
        onProgress: () => {
          if (!truncated) truncateSync(sourcePath, 8 * MEBIBYTE + 1);
          truncated = true;
        },
      });

      const error = await expectConductorError(copying, 'SIZE_MISMATCH');

      expect(error.message).toContain(`${8 * MEBIBYTE + 1} bytes arrived, expected ${16 * MEBIBYTE}`);
      await expectNothingAtDestination();
    });

    it('answers SOURCE_MISSING, naming node and image, when the source has no verified image', async () => {
      const none = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(none.message).toContain('node-a');
      expect(none.message).toContain(IMAGE);

      await seed('node-a', MEBIBYTE);
      await fsp.rm(store.entries.imagePath('node-a', IMAGE));
      const noFile = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(noFile.message).toContain('image file missing');

      await seed('node-a', MEBIBYTE);
      await fsp.writeFile(store.entries.metaPath('node-a', IMAGE), '{not json');
      const badMeta = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(badMeta.message).toContain('meta file invalid: not JSON');
      expect(warnings).toEqual([
        expect.stringContaining(`invalid file ${store.entries.metaPath('node-a', IMAGE)}: not JSON`),
      ]);
      warnings.length = 0;

      await seed('node-a', MEBIBYTE);
      await fsp.appendFile(store.entries.imagePath('node-a', IMAGE), 'x');
      const inconsistent = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(inconsistent.message).toContain(`${MEBIBYTE + 1} bytes but its meta says ${MEBIBYTE}`);

      await expectNothingAtDestination();
    });

    it('does not follow a symlink in place of the source image', async () => {
      await seed('node-a', MEBIBYTE);
      const outside = path.join(root, 'outside.bin');
      await fsp.rename(store.entries.imagePath('node-a', IMAGE), outside);
      await fsp.symlink(outside, store.entries.imagePath('node-a', IMAGE));
      const error = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(error.message).toContain('not a regular file');
      await expectNothingAtDestination();
    });

    it('stops on abort mid-copy, removes the partial copy and publishes nothing', async () => {
      await seed('node-a', 64 * MEBIBYTE);
      const controller = new AbortController();
      const seen: number[] = [];
      const partialCopy = path.join(store.nodeLayout('node-b').tmp, `${IMAGE}~attempt-1.part`);
      let partialSizeAtAbort = 0;
      const copying = copy({
        signal: controller.signal,
        onProgress: (done) => {
          seen.push(done);
          if (done === 16 * MEBIBYTE) {
            partialSizeAtAbort = statSync(partialCopy).size; // synchronous: this runs inside onProgress
            controller.abort();
          }
        },
      });

      const error = await rejectionOf(copying);

      expect(error).toBe(controller.signal.reason);
      expect((error as Error).name).toBe('AbortError');
      expect(partialSizeAtAbort).toBe(16 * MEBIBYTE);
      expect(seen.at(-1)).toBe(16 * MEBIBYTE);
      await expectNothingAtDestination();
    });

    it('turns an abort without an Error reason into SHUTTING_DOWN', async () => {
      await seed('node-a', 4 * MEBIBYTE);
      const controller = new AbortController();
      const copying = copy({ signal: controller.signal, onProgress: () => controller.abort('stopping') });
      const error = await expectConductorError(copying, 'SHUTTING_DOWN');
      expect(error.retryable).toBe(true);
      await expectNothingAtDestination();
    });

    it('does nothing when the signal is already aborted', async () => {
      await seed('node-a', MEBIBYTE);
      const reason = new Error('already stopped');
      const error = await rejectionOf(copy({ signal: AbortSignal.abort(reason) }));
      expect(error).toBe(reason);
      expect(await listDir(store.nodeLayout('node-b').dir)).toEqual(['node.json']);
    });

    it('writes no meta when the check before it throws (a holder that lost its lock after the rename)', async () => {
      await seed('node-a', 2 * MEBIBYTE);
      const lockLost = new ReasonError('LOCK_LOST', 'destination lock taken over');
      const error = await rejectionOf(
        copy({
          beforeIrreversibleStep: async (step) => {
            if (step === 'meta') throw lockLost;
          },
        }),
      );
      expect(error).toBe(lockLost);
      expect(await exists(store.entries.metaPath('node-b', IMAGE))).toBe(false);
    });

    it('a late publish (passed its check, then another holder published the same bytes) keeps what is there', async () => {
      await seed('node-a', 2 * MEBIBYTE);
      const metaPath = store.entries.metaPath('node-b', IMAGE);
      let theirs: { ino: number; meta: string } | undefined;
      const outcome = await copy({
        attemptId: 'late-1',
        fencingToken: 7,
        beforeIrreversibleStep: async (step) => {
          if (step !== 'publish' || theirs) return;
          // The check passed; then this holder stalls while the next one (fencing token 8) publishes.
          await copy({ attemptId: 'next-1', fencingToken: 8 });
          theirs = { ino: (await fsp.stat(metaPath)).ino, meta: await fsp.readFile(metaPath, 'utf8') };
        },
      });
      expect(outcome.meta).toMatchObject({ attemptId: 'next-1', fencingToken: 8 });
      expect((await fsp.stat(metaPath)).ino).toBe(theirs!.ino);
      expect(await fsp.readFile(metaPath, 'utf8')).toBe(theirs!.meta);
      expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([]);
    });

    it('publishes nothing when the check before the rename throws, and propagates that error unchanged', async () => {
      await seed('node-a', 2 * MEBIBYTE);
      const lockLost = new ReasonError('LOCK_LOST', 'destination lock taken over');
      const error = await rejectionOf(
        copy({
          beforeIrreversibleStep: async () => {
            throw lockLost;
          },
        }),
      );
      expect(error).toBe(lockLost);
      await expectNothingAtDestination();
    });

    it('fails the copy when onProgress throws, and cleans up', async () => {
      await seed('node-a', 2 * MEBIBYTE);
      const boom = new Error('progress sink failed');
      const error = await rejectionOf(
        copy({
          onProgress: () => {
            throw boom;
          },
        }),
      );
      expect(error).toBe(boom);
      await expectNothingAtDestination();
    });

    it('refuses to reuse the partial copy of a live attempt id', async () => {
      await seed('node-a', MEBIBYTE);
      const tmp = store.nodeLayout('node-b').tmp;
      await fsp.mkdir(tmp, { recursive: true });
      await fsp.writeFile(path.join(tmp, `${IMAGE}~attempt-1.part`), 'someone else');
      const error = await expectConductorError(copy(), 'IO_ERROR');
      expect(error.message).toContain('attempt ids must be unique');
      expect(await fsp.readFile(path.join(tmp, `${IMAGE}~attempt-1.part`), 'utf8')).toBe('someone else');
    });

    it('answers DESTINATION_READ_ONLY when a file sits where the images folder belongs', async () => {
      await seed('node-a', MEBIBYTE);
      await fsp.mkdir(store.nodeLayout('node-b').dir, { recursive: true });
      await fsp.writeFile(store.nodeLayout('node-b').images, 'not a folder');
      const error = await expectConductorError(copy(), 'DESTINATION_READ_ONLY');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain('destination node node-b');
      expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([]);
    });

    it('answers DESTINATION_READ_ONLY when the destination folders are not writable', async (context) => {
      await seed('node-a', MEBIBYTE);
      const layout = store.nodeLayout('node-b');
      await fsp.mkdir(layout.images, { recursive: true });
      await fsp.mkdir(layout.tmp, { recursive: true });
      const undo = await makeUnwritable([layout.images, layout.tmp]);
      try {
        if (!undo.effective) {
          context.skip(
            'running as root without chattr support: neither chmod 0555 nor chattr +i stop writes here ' +
              '(the errno mapping is covered in fs-errors.spec.ts and by the file-in-place-of-folder test)',
          );
        }
        const error = await expectConductorError(copy(), 'DESTINATION_READ_ONLY');
        expect(error.message).toContain('not writable');
      } finally {
        await undo.restore();
      }
      expect(await listDir(layout.tmp)).toEqual([]);
      expect(await exists(store.entries.imagePath('node-b', IMAGE))).toBe(false);
    });

    it.each([
      ['source', { source: '../x' }, "must not contain '..'"],
      ['source', { source: 'x..y' }, "must not contain '..'"],
      ['source', { source: '' }, 'must not be empty'],
      ['destination', { destination: 'n'.repeat(200) }, 'must be at most 64 characters'],
      ['destination', { destination: 'a\nb' }, 'must start with a letter or digit'],
      ['destination', { destination: 'a/b' }, 'must start with a letter or digit'],
      ['destination', { destination: 'node-a' }, 'must differ from source'],
      ['imageId', { imageId: 'x'.repeat(200) }, 'must be at most 128 characters'],
      ['imageId', { imageId: '/etc/passwd' }, 'must start with a letter or digit'],
      ['imageId', { imageId: 'ubuntu\u2024img' }, 'must start with a letter or digit'], // one-dot leader, looks like '.'
      ['imageId', { imageId: 'ubuntu\u2215img' }, 'must start with a letter or digit'], // division slash, looks like '/'
      ['imageId', { imageId: 'img.meta.json' }, "must not end with '.meta.json'"],
      ['attemptId', { attemptId: 'a~b' }, 'must start with a letter or digit'],
      ['sha256', { expected: { sha256: 'xyz' } }, 'must be 64 lowercase hexadecimal characters'],
      ['size', { expected: { size: -1 } }, 'must not be negative'],
      ['fencingToken', { fencingToken: 1.5 }, 'must be a whole number'],
    ] as Array<[string, Partial<CopyImageRequest>, string]>)(
      'refuses a bad %s (%j)',
      async (field, overrides, message) => {
        await seed('node-a', MEBIBYTE);
        const error = await rejectionOf(copy(overrides));
        expect(error).toBeInstanceOf(InvalidFieldError);
        expect((error as InvalidFieldError).field).toBe(field);
        expect((error as InvalidFieldError).code).toBe('INVALID_REQUEST');
        expect((error as Error).message.startsWith(`${field}: `)).toBe(true);
        expect((error as Error).message).toContain(message);
        expect(await listDir(store.nodeLayout('node-b').dir)).toEqual(['node.json']);
      },
    );
  });

  describe('verifiedImage', () => {
    it('checks the file against its meta and the expectation', async () => {
      const sha256 = await seed('node-a', MEBIBYTE);
      expect(await store.copies.verifiedImage('node-a', IMAGE)).toMatchObject({ sha256, size: MEBIBYTE });
      expect(await store.copies.verifiedImage('node-a', IMAGE, { sha256, size: MEBIBYTE })).toBeDefined();
      expect(await store.copies.verifiedImage('node-a', IMAGE, { sha256: '0'.repeat(64) })).toBeUndefined();
      expect(await store.copies.verifiedImage('node-a', IMAGE, { size: 1 })).toBeUndefined();
      await fsp.truncate(store.entries.imagePath('node-a', IMAGE), 10);
      expect(await store.copies.verifiedImage('node-a', IMAGE)).toBeUndefined();
      expect(await store.copies.verifiedImage('node-x', IMAGE)).toBeUndefined();
    });
  });

  describe('touchLastUsed', () => {
    it('records the last use in used/<imageId> without touching the meta, and the entry shows it', async () => {
      await seed('node-a', MEBIBYTE);
      const metaPath = store.entries.metaPath('node-a', IMAGE);
      const before = await store.entries.readMeta('node-a', IMAGE);
      const past = '2020-01-01T00:00:00.000Z';
      const written = JSON.stringify({ ...before, lastUsedAt: past, createdAt: past });
      await fsp.writeFile(metaPath, written);
      const { ino } = await fsp.stat(metaPath);

      await store.copies.touchLastUsed('node-a', IMAGE);

      // The very same meta file, unchanged: never replaced (a replaced open file is litter on sshfs/NFS).
      expect((await fsp.stat(metaPath)).ino).toBe(ino);
      expect(await fsp.readFile(metaPath, 'utf8')).toBe(written);
      const { meta } = await store.entries.entry('node-a', IMAGE);
      expect(meta).toEqual({ ...before, createdAt: past, lastUsedAt: expect.any(String) });
      expect(Date.parse(meta?.lastUsedAt ?? '')).toBeGreaterThan(Date.parse(past));
      expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
      expect(await listDir(store.nodeLayout('node-a').used)).toEqual([IMAGE]);
    });

    it('a last use older than the meta says changes nothing; a delete removes the marker', async () => {
      await seed('node-a', MEBIBYTE);
      await store.copies.touchLastUsed('node-a', IMAGE);
      const marker = path.join(store.nodeLayout('node-a').used, IMAGE);
      await fsp.utimes(marker, new Date('2001-01-01'), new Date('2001-01-01'));
      const meta = await store.entries.readMeta('node-a', IMAGE);
      expect((await store.entries.entry('node-a', IMAGE)).meta).toEqual(meta);
      await store.entries.deleteImage('node-a', IMAGE);
      expect(await listDir(store.nodeLayout('node-a').used)).toEqual([]);
    });

    it('answers SOURCE_MISSING when there is no meta to touch', async () => {
      await expectConductorError(store.copies.touchLastUsed('node-a', IMAGE), 'SOURCE_MISSING');
    });
  });
});

/**
 * Makes folders unwritable for this process. chmod is enough for an ordinary user; root ignores it, so
 * then try the immutable attribute. `effective` says whether a write is actually refused now.
 */
async function makeUnwritable(dirs: string[]): Promise<{ effective: boolean; restore: () => Promise<void> }> {
  const immutable: string[] = [];
  const restore = async (): Promise<void> => {
    for (const dir of immutable) execFileSync('chattr', ['-i', dir]);
    for (const dir of dirs) await fsp.chmod(dir, 0o755);
  };
  for (const dir of dirs) await fsp.chmod(dir, 0o555);
  if (!(await canWrite(dirs[0]))) return { effective: true, restore };
  for (const dir of dirs) {
    try {
      execFileSync('chattr', ['+i', dir], { stdio: 'ignore' });
      immutable.push(dir);
    } catch {
      break; // no chattr or no CAP_LINUX_IMMUTABLE: `effective` below reports it
    }
  }
  return { effective: immutable.length === dirs.length && !(await canWrite(dirs[0])), restore };
}

async function canWrite(dir: string): Promise<boolean> {
  const probe = path.join(dir, '.write-probe');
  try {
    await fsp.writeFile(probe, '');
  } catch {
    return false;
  }
  await fsp.rm(probe);
  return true;
}
