import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ReasonError } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import type { LockRequest, NodeLockManager } from '@app/locking';
import type { OriginClient, OriginDownload as OriginBody } from '../origin/origin-client';
import type { CopyJob, CopyProgress } from './copy-job';
import { ImageHolderIndex } from './holder-index';
import { OriginDownload } from './origin-download';
import { recordingLogger } from '../../../../test/support/recording-logger';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';

/*
 * OriginDownload's decisions (one download per image cell-wide, holder-appeared, already-present, what the
 * bytes must be) over a real ImageStore in a temp folder, with the two lock managers and the origin
 * replaced by stand-ins that record what was asked of them.
 */
const BYTES = Buffer.from('the image from the origin, byte for byte');
const SHA = createHash('sha256').update(BYTES).digest('hex');
const OTHER_SHA = 'e'.repeat(64);

async function* chunksOf(data: Buffer): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += 8) yield data.subarray(i, i + 8);
}

function fakeLocks(name: string, journal: string[], options: { lost?: () => boolean } = {}) {
  const requests: { request: LockRequest; timeoutMs: number }[] = [];
  const manager = {
    acquire: async (request: LockRequest, opts: { timeoutMs: number }) => {
      requests.push({ request, timeoutMs: opts.timeoutMs });
      journal.push(`${name} acquire ${request.node}/${request.imageId}`);
      return {
        fencingToken: 9,
        signal: new AbortController().signal,
        assertStillHeld: async () => {
          if (options.lost?.()) throw new ReasonError('LOCK_LOST', `${name} lock lost in the spec`);
        },
        release: async () => {
          journal.push(`${name} release`);
        },
      };
    },
  } as unknown as NodeLockManager;
  return { manager, requests };
}

describe('OriginDownload', () => {
  let root: string | undefined;
  afterEach(() => removeDir(root));

  async function setup(
    origin: { size?: number; sha256?: string; body?: Buffer } = {},
    lockOptions: { lost?: () => boolean } = {},
  ) {
    root = await makeTempDir('origin-download');
    const store = new ImageStore({ root, fsync: false });
    // Registered nodes have their folder (icc node add); the store creates nothing above a node's.
    for (const node of ['node-a', 'node-b', 'node-c']) await fsp.mkdir(path.join(root, node));
    const journal: string[] = [];
    const locks = fakeLocks('node', journal, lockOptions);
    const originLocks = fakeLocks('origin', journal);
    const index = new ImageHolderIndex(store.entries);
    const opened: string[] = [];
    let bodyRead = false;
    const client = {
      describe: () => ({ urlTemplate: 'http://origin/{imageId}', checksumHeader: 'x-sha256' }),
      open: async (imageId: string): Promise<OriginBody> => {
        opened.push(imageId);
        journal.push('origin open');
        const body = origin.body ?? BYTES;
        return {
          url: `http://origin/${imageId}`,
          size: 'size' in origin ? origin.size : body.length,
          sha256: 'sha256' in origin ? origin.sha256 : SHA,
          chunks: (async function* () {
            bodyRead = true;
            yield* chunksOf(body);
          })(),
        };
      },
    } as unknown as OriginClient;
    const log = recordingLogger();
    const download = new OriginDownload(store, locks.manager, originLocks.manager, index, client, log);
    const progress: CopyProgress[] = [];
    const run = (job: Partial<CopyJob> = {}) =>
      download.run(
        { imageId: 'img.raw', destination: 'node-b', ...job },
        { attemptId: 'attempt-1', onProgress: (p) => progress.push({ ...p }) },
        5_000,
      );
    const plant = (node: string, data = BYTES) =>
      store.imports.importStream(node, 'img.raw', chunksOf(data), 'planted by the spec', {
        expected: { sha256: createHash('sha256').update(data).digest('hex') },
      });
    return {
      store,
      journal,
      locks,
      originLocks,
      index,
      opened,
      bodyRead: () => bodyRead,
      download,
      progress,
      run,
      plant,
      log,
    };
  }

  it('downloads a new image under the origin lock, then the destination lock, and publishes it verified', async () => {
    const t = await setup();
    const result = await t.run({ sha256: SHA });

    expect(result).toMatchObject({ status: 'completed', bytes: BYTES.length, sha256: SHA, fencingToken: 9 });
    expect(await t.store.copies.verifiedImage('node-b', 'img.raw', { sha256: SHA })).toMatchObject({
      size: BYTES.length,
    });
    expect(t.journal).toEqual([
      'origin acquire downloads/img.raw',
      'node acquire node-b/img.raw',
      'origin open',
      'node release',
      'origin release',
    ]);
    expect(t.originLocks.requests[0]!.request.mode).toBe('exclusive');
    expect(t.locks.requests[0]!.request.mode).toBe('exclusive');
    for (const { timeoutMs } of [...t.originLocks.requests, ...t.locks.requests]) {
      expect(timeoutMs).toBeGreaterThanOrEqual(1);
      expect(timeoutMs).toBeLessThanOrEqual(5_000);
    }
    expect(t.download.describe()).toMatchObject({ downloads: 1, bytes: BYTES.length });
    // The next copy of it finds node-b without a rescan.
    expect([...(await t.index.holdersOf('img.raw'))]).toEqual(['node-b']);
    const phases = t.progress.map((p) => p.phase);
    expect(phases[0]).toBe('waiting-for-lock');
    expect(phases).toContain('copying');
    expect(phases.at(-1)).toBe('publishing');
    expect(t.progress.at(-1)).toMatchObject({ bytesDone: BYTES.length, bytesTotal: BYTES.length });
  });

  it("takes the origin's checksum when the request has none", async () => {
    const t = await setup();
    expect(await t.run()).toMatchObject({ status: 'completed', sha256: SHA });
  });

  it('answers holder-appeared when another node got a verified copy meanwhile: no download, no destination lock', async () => {
    const t = await setup();
    await t.plant('node-c');
    expect(await t.run({ sha256: SHA })).toBe('holder-appeared');
    expect(t.opened).toEqual([]);
    expect(t.journal).toEqual(['origin acquire downloads/img.raw', 'origin release']);
    expect(t.download.describe().downloads).toBe(0);
  });

  it('a holder whose copy is not the one asked for does not count: the image is downloaded', async () => {
    const t = await setup();
    await t.plant('node-c', Buffer.from('another image under the same id'));
    expect(await t.run({ sha256: SHA })).toMatchObject({ status: 'completed', sha256: SHA });
    expect(t.opened).toEqual(['img.raw']);
  });

  it('the destination already holding it is already-present, checked under its lock, no download', async () => {
    const t = await setup();
    await t.plant('node-b');
    expect(await t.run({ sha256: SHA })).toEqual({
      status: 'already-present',
      bytes: BYTES.length,
      sha256: SHA,
    });
    expect(t.opened).toEqual([]);
    expect(t.journal).toEqual([
      'origin acquire downloads/img.raw',
      'node acquire node-b/img.raw',
      'node release',
      'origin release',
    ]);
  });

  it('CHECKSUM_MISMATCH when the origin announces another sha256 than the request: nothing downloaded', async () => {
    const t = await setup({ sha256: OTHER_SHA });
    const error = await t.run({ sha256: SHA }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReasonError);
    expect(error).toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    expect((error as Error).message).toContain('nothing was downloaded');
    expect(t.bodyRead()).toBe(false);
    expect(t.download.describe().downloads).toBe(0);
    expect(t.journal.slice(-2)).toEqual(['node release', 'origin release']);
    expect(await t.store.copies.verifiedImage('node-b', 'img.raw')).toBeUndefined();
  });

  it('SIZE_MISMATCH when the origin announces another size than the request', async () => {
    const t = await setup();
    await expect(t.run({ sha256: SHA, size: BYTES.length + 1 })).rejects.toMatchObject({
      code: 'SIZE_MISMATCH',
    });
    expect(t.bodyRead()).toBe(false);
  });

  it('ORIGIN_BAD_RESPONSE when neither the request nor the origin gives a checksum', async () => {
    const t = await setup({ sha256: undefined });
    await expect(t.run()).rejects.toMatchObject({
      code: 'ORIGIN_BAD_RESPONSE',
      message: expect.stringContaining('no checksum to verify against'),
    });
    expect(t.bodyRead()).toBe(false);
  });

  it('bytes that do not match the expected sha256 are not published', async () => {
    const t = await setup({
      body: Buffer.from('corrupted on the way, same length as the image!'),
      size: undefined,
    });
    await expect(t.run({ sha256: SHA })).rejects.toMatchObject({ code: 'CHECKSUM_MISMATCH' });
    expect(await t.store.copies.verifiedImage('node-b', 'img.raw')).toBeUndefined();
    expect(t.journal.slice(-2)).toEqual(['node release', 'origin release']);
  });

  it('a destination lock lost before publishing: LOCK_LOST and nothing published', async () => {
    const t = await setup({}, { lost: () => true });
    await expect(t.run({ sha256: SHA })).rejects.toMatchObject({ code: 'LOCK_LOST' });
    expect(await t.store.copies.verifiedImage('node-b', 'img.raw')).toBeUndefined();
    expect([...(await t.index.holdersOf('img.raw'))]).toEqual([]);
    expect(t.journal.slice(-2)).toEqual(['node release', 'origin release']);
  });

  it('removes the leftover partial copy of an earlier attempt before downloading', async () => {
    const t = await setup();
    const tmp = path.join(root!, 'node-b', 'tmp');
    await fsp.mkdir(tmp, { recursive: true });
    // A partial copy as the store names them: <imageId>~<attemptId>.part
    await fsp.writeFile(path.join(tmp, 'img.raw~dead-attempt.part'), 'half an image');
    expect(await t.run({ sha256: SHA })).toMatchObject({ status: 'completed' });
    expect(await fsp.readdir(tmp)).toEqual([]);
  });
});
