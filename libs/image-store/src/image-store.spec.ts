import { execFileSync } from 'node:child_process';
import { promises as fsp, statSync, truncateSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConductorError, InvalidFieldError, isConductorError } from '@app/contracts';
import {
  MEBIBYTE,
  exists,
  listDir,
  rejectionOf,
  sha256OfFile,
  writeRandomFile,
} from '../../../test/support/image-store-fixtures';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import { type CopyImageRequest, ImageStore } from './image-store';

const IMAGE = 'ubuntu-24.04.qcow2';

describe('ImageStore', () => {
  let root: string;
  let store: ImageStore;
  const warnings: string[] = [];

  beforeEach(async () => {
    root = await makeTempDir('image-store');
    warnings.length = 0;
    store = new ImageStore({ root, onWarning: (message) => warnings.push(message) });
    // A copy never creates a node's folder: the nodes of these tests are registered first.
    for (const node of ['node-a', 'node-b']) await store.registerNode(node, 'image-store.spec');
  });

  afterEach(async () => {
    await removeDir(root);
    expect(warnings).toEqual([]);
  });

  /** Publishes an image of `bytes` bytes on `node` and returns its sha256. */
  async function seed(node: string, bytes: number, imageId = IMAGE): Promise<string> {
    const staging = path.join(root, `staging-${imageId}`);
    const sha256 = await writeRandomFile(staging, bytes);
    await store.importImage(node, imageId, staging);
    await fsp.rm(staging);
    return sha256;
  }

  function copy(
    overrides: Partial<CopyImageRequest> = {},
  ): Promise<Awaited<ReturnType<ImageStore['copyImage']>>> {
    return store.copyImage({
      imageId: IMAGE,
      source: 'node-a',
      destination: 'node-b',
      attemptId: 'attempt-1',
      ...overrides,
    });
  }

  async function expectConductorError(
    promise: Promise<unknown>,
    code: ConductorError['code'],
  ): Promise<ConductorError> {
    const error = await rejectionOf(promise);
    expect(isConductorError(error) ? error.code : error).toBe(code);
    return error as ConductorError;
  }

  /** Nothing published at the destination and no partial copy left behind. */
  async function expectNothingAtDestination(node = 'node-b', imageId = IMAGE): Promise<void> {
    expect(await exists(store.imagePath(node, imageId))).toBe(false);
    expect(await exists(store.metaPath(node, imageId))).toBe(false);
    expect(await listDir(store.nodeLayout(node).tmp)).toEqual([]);
  }

  describe('layout', () => {
    it('places images, meta, locks and tmp under <root>/<node>/', () => {
      const layout = store.nodeLayout('node-a');
      expect(layout).toEqual({
        node: 'node-a',
        dir: path.join(root, 'node-a'),
        images: path.join(root, 'node-a', 'images'),
        locks: path.join(root, 'node-a', 'locks'),
        tmp: path.join(root, 'node-a', 'tmp'),
        pinned: path.join(root, 'node-a', 'pinned'),
        draining: path.join(root, 'node-a', 'draining'),
        marker: path.join(root, 'node-a', 'node.json'),
      });
      expect(store.imagePath('node-a', 'img.v1.raw')).toBe(path.join(root, 'node-a', 'images', 'img.v1.raw'));
      expect(store.metaPath('node-a', 'img.v1.raw')).toBe(
        path.join(root, 'node-a', 'images', 'img.v1.raw.meta.json'),
      );
    });

    it('resolves a relative root to an absolute one', () => {
      const relative = new ImageStore({ root: path.relative(process.cwd(), root) });
      expect(relative.root).toBe(root);
    });
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
          expect(await exists(store.imagePath('node-b', IMAGE))).toBe(step === 'meta');
        },
      });

      expect(outcome.status).toBe('copied');
      expect(outcome.bytes).toBe(size);
      expect(outcome.sha256).toBe(sha256);
      expect(outcome.copyMs).toBeGreaterThanOrEqual(0);
      expect(irreversibleSteps).toEqual(['publish', 'meta']);
      expect(await sha256OfFile(store.imagePath('node-b', IMAGE))).toBe(sha256);
      expect(progress.map(([done]) => done)).toEqual([MEBIBYTE, 2 * MEBIBYTE, 3 * MEBIBYTE, size]);
      expect(progress.every(([, total]) => total === size)).toBe(true);

      const meta = await store.readMeta('node-b', IMAGE);
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
      expect(await store.verifiedImage('node-b', IMAGE, { sha256, size })).toEqual(meta);
      expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([]);
      // The source is left exactly as it was.
      expect(await store.verifiedImage('node-a', IMAGE, { sha256 })).toBeDefined();
    });

    it('copies an empty image', async () => {
      const sha256 = await seed('node-a', 0);
      const outcome = await copy();
      expect(outcome).toMatchObject({ status: 'copied', bytes: 0, sha256 });
      expect((await fsp.stat(store.imagePath('node-b', IMAGE))).size).toBe(0);
    });

    it('is a no-op when the destination already holds the verified image', async () => {
      const sha256 = await seed('node-a', 2 * MEBIBYTE);
      await copy();
      const imageBefore = await fsp.stat(store.imagePath('node-b', IMAGE));
      const metaBefore = await fsp.readFile(store.metaPath('node-b', IMAGE), 'utf8');
      const metaStatBefore = await fsp.stat(store.metaPath('node-b', IMAGE));

      const again = await copy({ attemptId: 'attempt-2', expected: { sha256: sha256.toUpperCase() } });

      expect(again.status).toBe('already-present');
      expect(again.bytes).toBe(0);
      expect(again.sha256).toBe(sha256);
      expect(again.meta.attemptId).toBe('attempt-1');
      const imageAfter = await fsp.stat(store.imagePath('node-b', IMAGE));
      expect(imageAfter.ino).toBe(imageBefore.ino);
      expect(imageAfter.mtimeMs).toBe(imageBefore.mtimeMs);
      expect((await fsp.stat(store.metaPath('node-b', IMAGE))).ino).toBe(metaStatBefore.ino);
      expect(await fsp.readFile(store.metaPath('node-b', IMAGE), 'utf8')).toBe(metaBefore);
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
      expect(await sha256OfFile(store.imagePath('node-b', IMAGE))).toBe(newSha);
      expect((await store.readMeta('node-b', IMAGE))?.sha256).toBe(newSha);
    });

    it('refuses a corrupted source (bytes changed, meta kept): CHECKSUM_MISMATCH, nothing published', async () => {
      await seed('node-a', 2 * MEBIBYTE + 5);
      const sourcePath = store.imagePath('node-a', IMAGE);
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
      const sourcePath = store.imagePath('node-a', IMAGE);
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
      await seed('node-a', 4 * MEBIBYTE);
      const sourcePath = store.imagePath('node-a', IMAGE);
      let truncated = false;
      const copying = copy({
        onProgress: () => {
          if (!truncated) truncateSync(sourcePath, 2 * MEBIBYTE + 1);
          truncated = true;
        },
      });

      const error = await expectConductorError(copying, 'SIZE_MISMATCH');

      expect(error.message).toContain(`${2 * MEBIBYTE + 1} bytes arrived, expected ${4 * MEBIBYTE}`);
      await expectNothingAtDestination();
    });

    it('answers SOURCE_MISSING, naming node and image, when the source has no verified image', async () => {
      const none = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(none.message).toContain('node-a');
      expect(none.message).toContain(IMAGE);

      await seed('node-a', MEBIBYTE);
      await fsp.rm(store.imagePath('node-a', IMAGE));
      const noFile = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(noFile.message).toContain('image file missing');

      await seed('node-a', MEBIBYTE);
      await fsp.writeFile(store.metaPath('node-a', IMAGE), '{not json');
      const badMeta = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(badMeta.message).toContain('meta file invalid: not JSON');
      expect(warnings).toEqual([
        expect.stringContaining(`invalid file ${store.metaPath('node-a', IMAGE)}: not JSON`),
      ]);
      warnings.length = 0;

      await seed('node-a', MEBIBYTE);
      await fsp.appendFile(store.imagePath('node-a', IMAGE), 'x');
      const inconsistent = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(inconsistent.message).toContain(`${MEBIBYTE + 1} bytes but its meta says ${MEBIBYTE}`);

      await expectNothingAtDestination();
    });

    it('does not follow a symlink in place of the source image', async () => {
      await seed('node-a', MEBIBYTE);
      const outside = path.join(root, 'outside.bin');
      await fsp.rename(store.imagePath('node-a', IMAGE), outside);
      await fsp.symlink(outside, store.imagePath('node-a', IMAGE));
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
      const lockLost = new ConductorError('LOCK_LOST', 'destination lock taken over');
      const error = await rejectionOf(
        copy({
          beforeIrreversibleStep: async (step) => {
            if (step === 'meta') throw lockLost;
          },
        }),
      );
      expect(error).toBe(lockLost);
      expect(await exists(store.metaPath('node-b', IMAGE))).toBe(false);
    });

    it('publishes nothing when the check before the rename throws, and propagates that error unchanged', async () => {
      await seed('node-a', 2 * MEBIBYTE);
      const lockLost = new ConductorError('LOCK_LOST', 'destination lock taken over');
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
      expect(await exists(store.imagePath('node-b', IMAGE))).toBe(false);
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

  describe('ids on the other methods', () => {
    it.each(['../x', '', 'n'.repeat(200), 'a\nb', 'a/b', '.', '..', 'nöde', 'node\u0430'])(
      'refuses node id %j',
      (node) => {
        expect(() => store.nodeLayout(node)).toThrow(InvalidFieldError);
        expect(() => store.nodeLayout(node)).toThrow(/^node: /);
        expect(() => store.imagePath(node, IMAGE)).toThrow(/^node: /);
      },
    );

    it('refuses bad image ids with the field named', async () => {
      expect(() => store.imagePath('node-a', '../../etc/passwd')).toThrow(/^imageId: /);
      expect(() => store.metaPath('node-a', 'a\u0000b')).toThrow(/^imageId: /);
      await expect(store.readMeta('node-a', '..')).rejects.toThrow(/^imageId: /);
      await expect(store.removeLeftoverTmp('node-a', 'a/b')).rejects.toThrow(/^imageId: /);
      await expect(store.touchLastUsed('../a', IMAGE)).rejects.toThrow(/^node: /);
      await expect(store.importImage('node-a', 'x'.repeat(129), '/dev/null')).rejects.toThrow(/^imageId: /);
    });
  });

  describe('readMeta', () => {
    const valid = (): Record<string, unknown> => ({
      v: 1,
      imageId: IMAGE,
      size: 10,
      sha256: 'ab'.repeat(32),
      createdAt: '2025-01-02T03:04:05.000Z',
      lastUsedAt: '2025-01-02T03:04:05.000Z',
    });

    async function writeMeta(content: string): Promise<void> {
      await fsp.mkdir(store.nodeLayout('node-a').images, { recursive: true });
      await fsp.writeFile(store.metaPath('node-a', IMAGE), content);
    }

    it('reads valid meta', async () => {
      await writeMeta(JSON.stringify({ ...valid(), source: { node: 'node-z' }, unknownField: true }));
      expect(await store.readMeta('node-a', IMAGE)).toEqual({ ...valid(), source: { node: 'node-z' } });
    });

    it('answers undefined for a missing meta file or node', async () => {
      expect(await store.readMeta('node-a', IMAGE)).toBeUndefined();
    });

    /** The one warning about the meta file: it names the file and what is wrong with it. */
    function expectOneWarning(problem: RegExp): void {
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(`invalid file ${store.metaPath('node-a', IMAGE)}: `);
      expect(warnings[0]).toMatch(problem);
      warnings.length = 0;
    }

    it.each([
      ['garbage', '{"v":1,', /: not JSON \(/],
      ['not an object', '"hello"', /: \(file\): /],
      ['null', 'null', /: \(file\): /],
      ['empty', '', /: not JSON \(/],
      ['a size that is a string', JSON.stringify({ ...valid(), size: '10' }), /: size: /],
      ['a negative size', JSON.stringify({ ...valid(), size: -1 }), /: size: /],
      ['a fractional size', JSON.stringify({ ...valid(), size: 1.5 }), /: size: /],
      ['another version', JSON.stringify({ ...valid(), v: 2 }), /: v: /],
      ['a bad sha256', JSON.stringify({ ...valid(), sha256: 'zz'.repeat(32) }), /: sha256: /],
      ['an uppercase sha256', JSON.stringify({ ...valid(), sha256: 'AB'.repeat(32) }), /: sha256: /],
      ['a bad date', JSON.stringify({ ...valid(), createdAt: 'yesterday' }), /: createdAt: /],
      [
        'another image id',
        JSON.stringify({ ...valid(), imageId: 'other' }),
        /: imageId: is "other", the file is named for /,
      ],
      ['a bad source node', JSON.stringify({ ...valid(), source: { node: '../x' } }), /: source\.node: /],
      ['a missing field', JSON.stringify({ ...valid(), sha256: undefined }), /: sha256: /],
      [
        'a huge file',
        JSON.stringify({ ...valid(), padding: 'x'.repeat(100_000) }),
        /: larger than 65536 bytes/,
      ],
    ])(
      'answers undefined for %s, with a warning naming the file and the field',
      async (_name, content, problem) => {
        await writeMeta(content);
        expect(await store.readMeta('node-a', IMAGE)).toBeUndefined();
        expectOneWarning(problem);
      },
    );

    it('answers undefined when a folder sits at the meta path', async () => {
      await fsp.mkdir(store.metaPath('node-a', IMAGE), { recursive: true });
      expect(await store.readMeta('node-a', IMAGE)).toBeUndefined();
      expectOneWarning(/: not a regular file/);
    });

    it('reports a meta file without lastUsedAt once per version, and says why its image is not used', async () => {
      const sha256 = await seed('node-a', 100);
      const metaPath = store.metaPath('node-a', IMAGE);
      const { lastUsedAt: _dropped, ...withoutLastUse } = JSON.parse(
        await fsp.readFile(metaPath, 'utf8'),
      ) as Record<string, unknown>;
      await fsp.writeFile(metaPath, JSON.stringify(withoutLastUse));
      await fsp.utimes(metaPath, new Date(1_000_000), new Date(1_000_000));

      // Every way of reading it sees it as unverified; it is reported once, not on every read.
      const refused = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(refused.message).toContain('meta file invalid: lastUsedAt: ');
      expect(await store.verifiedImage('node-a', IMAGE, { sha256 })).toBeUndefined();
      expect(await store.inspectImage('node-a', IMAGE)).toEqual({
        problem: expect.stringMatching(/^meta file invalid: lastUsedAt: /),
      });
      expect(await store.listEntries('node-a')).toEqual([
        {
          imageId: IMAGE,
          problem: expect.stringMatching(/^meta file invalid: lastUsedAt: /),
          bytes: 100,
          modifiedMs: expect.any(Number),
        },
      ]);
      expectOneWarning(/: lastUsedAt: .*; image ubuntu-24\.04\.qcow2 on node node-a is not used/);

      // A new version of the file (another mtime) is reported again.
      await fsp.utimes(metaPath, new Date(2_000_000), new Date(2_000_000));
      expect(await store.readMeta('node-a', IMAGE)).toBeUndefined();
      expect(await store.readMeta('node-a', IMAGE)).toBeUndefined();
      expectOneWarning(/: lastUsedAt: /);
      await expectNothingAtDestination();
    });
  });

  describe('verifiedImage, listNodes, listImages', () => {
    it('checks the file against its meta and the expectation', async () => {
      const sha256 = await seed('node-a', MEBIBYTE);
      expect(await store.verifiedImage('node-a', IMAGE)).toMatchObject({ sha256, size: MEBIBYTE });
      expect(await store.verifiedImage('node-a', IMAGE, { sha256, size: MEBIBYTE })).toBeDefined();
      expect(await store.verifiedImage('node-a', IMAGE, { sha256: '0'.repeat(64) })).toBeUndefined();
      expect(await store.verifiedImage('node-a', IMAGE, { size: 1 })).toBeUndefined();
      await fsp.truncate(store.imagePath('node-a', IMAGE), 10);
      expect(await store.verifiedImage('node-a', IMAGE)).toBeUndefined();
      expect(await store.verifiedImage('node-x', IMAGE)).toBeUndefined();
    });

    it('lists node folders and verified images, ignoring anything else', async () => {
      await seed('node-b', 10, 'img.b');
      await seed('node-a', 10, 'img.a2');
      await seed('node-a', 20, 'img.a1');
      await seed('node-a', 30, 'img.broken');
      await fsp.rm(store.imagePath('node-a', 'img.broken'));
      await fsp.writeFile(path.join(root, 'a-file'), '');
      await fsp.mkdir(path.join(root, '.hidden'));
      await fsp.mkdir(path.join(root, 'bad name'));
      await fsp.writeFile(path.join(store.nodeLayout('node-a').images, 'stray.meta.json'), '{}');

      expect(await store.listNodes()).toEqual(['node-a', 'node-b']);
      const images = await store.listImages('node-a');
      expect(images.map((meta) => [meta.imageId, meta.size])).toEqual([
        ['img.a1', 20],
        ['img.a2', 10],
      ]);
      expect(warnings).toEqual([expect.stringContaining('/node-a/images/stray.meta.json: v: ')]);
      warnings.length = 0;
      expect(await store.listImages('node-c')).toEqual([]);
      // The cheap listing (one readdir) names every meta file, verified or not.
      expect(await store.listImageIds('node-a')).toEqual(['img.a1', 'img.a2', 'img.broken', 'stray']);
      expect(await store.listImageIds('node-c')).toEqual([]);
    });

    it('lists nothing for a missing root', async () => {
      expect(await new ImageStore({ root: path.join(root, 'missing') }).listNodes()).toEqual([]);
    });
  });

  describe('node registration', () => {
    it('registers a node with a validated marker, keeps an existing one, and unregisters it', async () => {
      const added = await store.registerNode('node-new', 'ops@host');
      expect(added).toEqual({
        created: true,
        marker: { v: 1, node: 'node-new', registeredAt: expect.any(String), registeredBy: 'ops@host' },
      });
      expect(JSON.parse(await fsp.readFile(path.join(root, 'node-new', 'node.json'), 'utf8'))).toEqual(
        added.marker,
      );
      expect(await listDir(path.join(root, 'node-new'))).toEqual(['node.json']); // no tmp file left
      expect(await store.registerNode('node-new', 'someone else')).toEqual({
        created: false,
        marker: added.marker,
      });
      expect(await store.nodeRegistration('node-new')).toEqual({ registered: true, marker: added.marker });
      expect(await store.unregisterNode('node-new')).toBe(true);
      expect(await store.unregisterNode('node-new')).toBe(false);
      expect(await store.nodeRegistration('node-new')).toEqual({
        registered: false,
        problem: `no marker ${path.join(root, 'node-new', 'node.json')}`,
      });
      expect(await store.isRegistered('node-never')).toBe(false);
      expect(await listDir(root)).toEqual(['node-a', 'node-b', 'node-new']); // asking created nothing
    });

    it.each([
      ['not JSON', '{', /: not JSON \(/],
      [
        'another version',
        JSON.stringify({ v: 2, node: 'node-a', registeredAt: '2026-01-01T00:00:00Z', registeredBy: 'x' }),
        /: v: /,
      ],
      ['no registeredAt', JSON.stringify({ v: 1, node: 'node-a', registeredBy: 'x' }), /: registeredAt: /],
      [
        'a control character in registeredBy',
        JSON.stringify({ v: 1, node: 'node-a', registeredAt: '2026-01-01T00:00:00Z', registeredBy: 'a\nb' }),
        /: registeredBy: must be printable ASCII/,
      ],
      [
        "another node's marker",
        JSON.stringify({ v: 1, node: 'node-b', registeredAt: '2026-01-01T00:00:00Z', registeredBy: 'x' }),
        /: node: is "node-b", the folder is "node-a"/,
      ],
    ])(
      'counts a node with a broken marker (%s) as unknown, with one warning naming the file and the field',
      async (_name, content, problem) => {
        const marker = store.nodeLayout('node-a').marker;
        await fsp.writeFile(marker, content);
        for (let i = 0; i < 3; i++) expect(await store.isRegistered('node-a')).toBe(false);
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toContain(`invalid file ${marker}: `);
        expect(warnings[0]).toMatch(problem);
        warnings.length = 0;
        // Registering again repairs it.
        expect((await store.registerNode('node-a', 'repair')).created).toBe(true);
        expect(await store.isRegistered('node-a')).toBe(true);
      },
    );

    it('refuses a bad node id or registeredBy, naming the field', async () => {
      await expect(store.registerNode('../x', 'ops')).rejects.toThrow(/^node: /);
      await expect(store.registerNode('node-c', '')).rejects.toThrow(/^registeredBy: must not be empty/);
      await expect(store.registerNode('node-c', 'x'.repeat(129))).rejects.toThrow(
        /^registeredBy: must be at most 128/,
      );
      expect(await listDir(root)).toEqual(['node-a', 'node-b']);
    });

    it('never creates the folder of a node a copy or an import names: UNKNOWN_NODE', async () => {
      await seed('node-a', 100);
      const copyError = await expectConductorError(copy({ destination: 'node-typo' }), 'UNKNOWN_NODE');
      expect(copyError.message).toContain(`its folder ${path.join(root, 'node-typo')} does not exist`);
      const staging = path.join(root, 'staging.bin');
      await fsp.writeFile(staging, 'bytes');
      await expectConductorError(store.importImage('node-typo', IMAGE, staging), 'UNKNOWN_NODE');
      await expectConductorError(store.pin('node-typo', IMAGE), 'UNKNOWN_NODE');
      await fsp.rm(staging);
      expect(await listDir(root)).toEqual(['node-a', 'node-b']);
    });
  });

  describe('importImage', () => {
    it('publishes a file with its size and sha256 and no source', async () => {
      const staging = path.join(root, 'staging.bin');
      const sha256 = await writeRandomFile(staging, MEBIBYTE + 1);
      const meta = await store.importImage('node-a', IMAGE, staging);
      expect(meta).toMatchObject({ v: 1, imageId: IMAGE, size: MEBIBYTE + 1, sha256 });
      expect(meta.source).toBeUndefined();
      expect(meta.attemptId).toMatch(/^import-/);
      expect(await store.verifiedImage('node-a', IMAGE, { sha256 })).toEqual(meta);
      expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
    });

    it('answers SOURCE_MISSING for a missing file', async () => {
      await expectConductorError(
        store.importImage('node-a', IMAGE, path.join(root, 'nope')),
        'SOURCE_MISSING',
      );
    });
  });

  describe('removeLeftoverTmp', () => {
    async function leave(names: string[]): Promise<string> {
      const tmp = store.nodeLayout('node-b').tmp;
      await fsp.mkdir(tmp, { recursive: true });
      for (const name of names) await fsp.writeFile(path.join(tmp, name), name);
      return tmp;
    }

    it('removes the partial copies of one image only', async () => {
      const tmp = await leave([
        'img~attempt-1.part',
        'img~meta-123.part',
        'img.v2~attempt-1.part', // an id with 'img' as prefix
        'other~a.b.c.part',
        'unrelated.txt',
      ]);
      expect(await store.removeLeftoverTmp('node-b', 'img')).toBe(2);
      expect(await listDir(tmp)).toEqual(['img.v2~attempt-1.part', 'other~a.b.c.part', 'unrelated.txt']);
      expect(await store.removeLeftoverTmp('node-b', 'img.v2')).toBe(1);
      expect(await store.removeLeftoverTmp('node-b', 'img')).toBe(0);
    });

    it('removes every file in tmp when no image is named, and leaves folders alone', async () => {
      const tmp = await leave(['img~attempt-1.part', 'other~x.part', 'unrelated.txt']);
      await fsp.mkdir(path.join(tmp, 'a-folder'));
      expect(await store.removeLeftoverTmp('node-b')).toBe(3);
      expect(await listDir(tmp)).toEqual(['a-folder']);
    });

    it('keeps recent files when olderThanMs is given', async () => {
      const tmp = await leave(['old~a.part', 'new~a.part']);
      const anHourAgo = new Date(Date.now() - 3_600_000);
      await fsp.utimes(path.join(tmp, 'old~a.part'), anHourAgo, anHourAgo);
      expect(await store.removeLeftoverTmp('node-b', undefined, { olderThanMs: 60_000 })).toBe(1);
      expect(await listDir(tmp)).toEqual(['new~a.part']);
    });

    it('answers 0 when the node has no tmp folder', async () => {
      expect(await store.removeLeftoverTmp('node-b')).toBe(0);
    });
  });

  describe('deleteImage and listEntries (the cache cleaner, under the exclusive lock)', () => {
    it('removes meta, image and partial copies, and the image is no longer verified', async () => {
      await seed('node-a', MEBIBYTE + 5);
      const tmp = store.nodeLayout('node-a').tmp;
      await fsp.writeFile(path.join(tmp, `${IMAGE}~dead-attempt.part`), 'partial');
      await fsp.writeFile(path.join(tmp, 'other.img~x.part'), 'other');
      expect(await store.deleteImage('node-a', IMAGE)).toEqual({
        removedMeta: true,
        removedImage: true,
        bytes: MEBIBYTE + 5,
        tmpRemoved: 1,
      });
      expect(await store.verifiedImage('node-a', IMAGE)).toBeUndefined();
      expect(await listDir(store.nodeLayout('node-a').images)).toEqual([]);
      expect(await listDir(tmp)).toEqual(['other.img~x.part']);
    });

    it('finishes an interrupted delete from any partial state', async () => {
      await seed('node-a', 100, 'meta-only');
      await fsp.rm(store.imagePath('node-a', 'meta-only'));
      await seed('node-a', 200, 'image-only');
      await fsp.rm(store.metaPath('node-a', 'image-only'));
      expect(await store.deleteImage('node-a', 'meta-only')).toEqual({
        removedMeta: true,
        removedImage: false,
        bytes: 0,
        tmpRemoved: 0,
      });
      expect(await store.deleteImage('node-a', 'image-only')).toEqual({
        removedMeta: false,
        removedImage: true,
        bytes: 200,
        tmpRemoved: 0,
      });
      expect(await store.deleteImage('node-a', 'never-there')).toEqual({
        removedMeta: false,
        removedImage: false,
        bytes: 0,
        tmpRemoved: 0,
      });
      expect(await store.deleteImage('node-new', IMAGE)).toMatchObject({
        removedMeta: false,
        removedImage: false,
      });
      expect(await listDir(store.nodeLayout('node-a').images)).toEqual([]);
    });

    it('refuses a folder at the image path and bad ids', async () => {
      await fsp.mkdir(store.imagePath('node-a', IMAGE), { recursive: true });
      await expectConductorError(store.deleteImage('node-a', IMAGE), 'IO_ERROR');
      expect(await exists(store.imagePath('node-a', IMAGE))).toBe(true);
      await expectConductorError(store.deleteImage('node-a', '../node-b/img'), 'INVALID_REQUEST');
      await expectConductorError(store.deleteImage('..', IMAGE), 'INVALID_REQUEST');
    });

    it('lists verified images and orphans with their bytes on disk', async () => {
      await seed('node-a', 30, 'ok');
      await seed('node-a', 40, 'no-meta');
      await fsp.rm(store.metaPath('node-a', 'no-meta'));
      await seed('node-a', 50, 'no-image');
      await fsp.rm(store.imagePath('node-a', 'no-image'));
      await seed('node-a', 60, 'truncated');
      await fsp.truncate(store.imagePath('node-a', 'truncated'), 6);
      await fsp.writeFile(path.join(store.nodeLayout('node-a').images, 'bad name'), '');
      const entries = await store.listEntries('node-a');
      expect(entries.map((e) => [e.imageId, e.meta?.size, e.bytes, e.modifiedMs === undefined])).toEqual([
        ['no-image', undefined, 0, true],
        ['no-meta', undefined, 40, false],
        ['ok', 30, 30, false],
        ['truncated', undefined, 6, false],
      ]);
      expect(await store.listEntries('node-z')).toEqual([]);
    });
  });

  describe('pins and the draining marker (operator files)', () => {
    it('pins and unpins by a marker file under <node>/pinned/', async () => {
      expect(await store.isPinned('node-a', IMAGE)).toBe(false);
      expect(await store.listPinned('node-a')).toEqual(new Set());
      await store.pin('node-a', IMAGE);
      await store.pin('node-a', IMAGE); // idempotent
      expect(await exists(path.join(root, 'node-a', 'pinned', IMAGE))).toBe(true);
      expect(await store.isPinned('node-a', IMAGE)).toBe(true);
      // An operator may also just mkdir or touch; names that are not image ids are ignored.
      await fsp.mkdir(path.join(root, 'node-a', 'pinned', 'by-hand'));
      await fsp.writeFile(path.join(root, 'node-a', 'pinned', 'bad name'), '');
      expect(await store.listPinned('node-a')).toEqual(new Set([IMAGE, 'by-hand']));
      expect(await store.unpin('node-a', IMAGE)).toBe(true);
      expect(await store.unpin('node-a', 'by-hand')).toBe(true);
      expect(await store.unpin('node-a', IMAGE)).toBe(false);
      expect(await store.isPinned('node-a', IMAGE)).toBe(false);
    });

    it('validates ids before they become paths', async () => {
      await expectConductorError(store.pin('node-a', '../../etc'), 'INVALID_REQUEST');
      await expectConductorError(store.pin('node-a', 'x.meta.json'), 'INVALID_REQUEST');
      await expectConductorError(store.isPinned('../x', IMAGE), 'INVALID_REQUEST');
      await expectConductorError(store.unpin('node-a', ''), 'INVALID_REQUEST');
      expect(await listDir(root)).toEqual(['node-a', 'node-b']);
      expect(await listDir(store.nodeLayout('node-a').dir)).toEqual(['node.json']);
    });

    it('reads the draining marker', async () => {
      expect(await store.isDraining('node-a')).toBe(false);
      await fsp.mkdir(path.join(root, 'node-a'), { recursive: true });
      await fsp.writeFile(store.nodeLayout('node-a').draining, '');
      expect(await store.isDraining('node-a')).toBe(true);
    });
  });

  describe('touchLastUsed', () => {
    it('rewrites lastUsedAt only, atomically', async () => {
      await seed('node-a', MEBIBYTE);
      const before = await store.readMeta('node-a', IMAGE);
      const past = '2020-01-01T00:00:00.000Z';
      await fsp.writeFile(
        store.metaPath('node-a', IMAGE),
        JSON.stringify({ ...before, lastUsedAt: past, createdAt: past }),
      );

      await store.touchLastUsed('node-a', IMAGE);

      const after = await store.readMeta('node-a', IMAGE);
      expect(after).toEqual({ ...before, createdAt: past, lastUsedAt: expect.any(String) });
      expect(Date.parse(after?.lastUsedAt ?? '')).toBeGreaterThan(Date.parse(past));
      expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
    });

    it('answers SOURCE_MISSING when there is no meta to touch', async () => {
      await expectConductorError(store.touchLastUsed('node-a', IMAGE), 'SOURCE_MISSING');
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
