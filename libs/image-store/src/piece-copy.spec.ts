import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReasonError } from '@app/contracts';
import { MEBIBYTE, listDir, sha256OfFile } from '../../../test/support/image-store-fixtures';
import type { CopyImageRequest } from './copy-pipeline';
import type { HelperHolder } from './helper-holders';
import { ImageStore } from './image-store';
import { PIECE_BYTES_MIN } from './piece-list';
import { IMAGE, useStoreFixture } from './store.fixture';

/** Four pieces, the last one short. */
/** The pieces of an image this small: 1 MiB (pieceBytesFor gives that below 512 MiB). */
const PIECE = PIECE_BYTES_MIN;
const SIZE = 3 * PIECE + 321;
const HOLDERS = ['node-a', 'node-c', 'node-d'];

/*
 * A copy that reads other pieces from several verified holders at once (piece-copy.ts), through the
 * pipeline as the conductor calls it: the source, plus helpers under their own locks (stand-ins here).
 */
describe('copies from several holders', () => {
  const fx = useStoreFixture();
  let store: ImageStore;
  let sha256: string;
  let read: Record<string, number>;
  const frozen: Array<() => void> = [];
  let dying: Promise<unknown> | undefined;
  beforeEach(async () => {
    store = new ImageStore({
      root: fx.root,
      resumeCheckpointBytes: MEBIBYTE,
      onWarning: (message) => fx.warnings.push(message),
    });
    for (const node of ['node-c', 'node-d']) await store.markers.registerNode(node, 'piece-copy.spec');
    sha256 = await fx.seed('node-a', SIZE);
    for (const node of ['node-c', 'node-d'])
      await store.copies.copyImage({
        imageId: IMAGE,
        source: 'node-a',
        destination: node,
        attemptId: `seed-${node}`,
      });
    read = Object.fromEntries(HOLDERS.map((node) => [node, 0]));
  });
  afterEach(async () => {
    for (const thaw of frozen.splice(0)) thaw();
    await dying;
    dying = undefined;
    await store.close();
  });

  /** Bytes read per holder, counted where they are read; `onRead` may fail or abort a holder's read. */
  const pace = (node: string, onRead?: (signal?: AbortSignal) => void) => ({
    afterRead: async (bytes: number, signal?: AbortSignal) => {
      read[node]! += bytes;
      onRead?.(signal);
      signal?.throwIfAborted();
    },
    beforeWrite: async () => {},
  });

  const copy = (overrides: Partial<CopyImageRequest> = {}) =>
    store.copies.copyImage({
      imageId: IMAGE,
      source: 'node-a',
      destination: 'node-b',
      attemptId: 'attempt-1',
      pace: pace('node-a'),
      helpers: ['node-c', 'node-d'].map((node) => ({ node, pace: pace(node) })),
      ...overrides,
    });

  const published = () => sha256OfFile(store.entries.imagePath('node-b', IMAGE));

  it('reads disjoint pieces from every holder and publishes the verified image', async () => {
    const outcome = await copy();
    expect(outcome).toMatchObject({ status: 'copied', bytes: SIZE, sha256 });
    expect(outcome.readFrom).toEqual(HOLDERS);
    expect(await published()).toBe(sha256);
    // Each holder read at least one piece, and no byte was read twice.
    for (const node of HOLDERS) expect(read[node]).toBeGreaterThanOrEqual(321);
    expect(HOLDERS.reduce((sum, node) => sum + read[node]!, 0)).toBe(SIZE);
    expect((await store.copies.readPieceList('node-b', IMAGE)).list?.sha256).toBe(sha256);
    expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([]);
  });

  it('reads the source alone without helpers, or when the source has no piece list (the gate)', async () => {
    expect((await copy({ helpers: [] })).readFrom).toBeUndefined();
    expect(read['node-a']).toBe(SIZE);
    await store.entries.deleteImage('node-b', IMAGE);
    await fsp.rm(store.entries.imagePath('node-a', IMAGE).replace(IMAGE, `${IMAGE}~pieces.json`));
    const outcome = await copy();
    expect(outcome.readFrom).toBeUndefined();
    expect(read['node-c']! + read['node-d']!).toBe(0);
    expect(await published()).toBe(sha256);
    expect(fx.warnings.splice(0)).toEqual([]); // a missing list is a release without lists' image: normal
  });

  it('drops a holder whose piece has another sha256 and reads that piece from another holder', async () => {
    // node-c's bytes went bad after they were verified (its meta and list still describe the image).
    const bad = await fsp.open(store.entries.imagePath('node-c', IMAGE), 'r+');
    await bad.write(Buffer.alloc(64 * 1024, 7), 0, 64 * 1024, PIECE + 10);
    await bad.close();
    const dropped: string[] = [];
    const outcome = await copy({
      helpers: [{ node: 'node-c', pace: pace('node-c') }],
      onHolderDropped: (node, why) => dropped.push(`${node}: ${why}`),
    });
    expect(outcome.sha256).toBe(sha256);
    expect(await published()).toBe(sha256);
    expect(dropped).toEqual([
      expect.stringMatching(/^node-c: piece 1 read from node node-c has sha256 \w+, its list says/),
    ]);
    expect(read['node-c']).toBe(PIECE);
    expect(read['node-a']).toBe(SIZE);
  });

  it('goes on without a holder whose lock is lost mid-piece, or whose read fails', async () => {
    const lost = new AbortController();
    const dropped: string[] = [];
    const helpers: HelperHolder[] = [
      {
        node: 'node-c',
        lost: lost.signal,
        pace: pace('node-c', () => lost.abort(new ReasonError('LOCK_LOST', 'lock on node-c lost'))),
      },
      {
        node: 'node-d',
        pace: pace('node-d', () => {
          throw new Error('EIO on node-d');
        }),
      },
    ];
    const outcome = await copy({ helpers, onHolderDropped: (node, why) => dropped.push(`${node}: ${why}`) });
    expect(await published()).toBe(sha256);
    expect(outcome.readFrom).toEqual(HOLDERS);
    expect(dropped.sort()).toEqual(['node-c: lock on node-c lost', 'node-d: EIO on node-d']);
    // Their first chunk was read, then nothing more from them: the source read all four pieces.
    expect(read['node-c']).toBe(MEBIBYTE);
    expect(read['node-a']).toBe(SIZE);
  });

  it('fails when every holder was dropped, with the last reason, and leaves nothing behind', async () => {
    const failing = (node: string) =>
      pace(node, () => {
        throw new ReasonError('IO_ERROR', `reading ${node} failed (EIO)`);
      });
    const error = await copy({
      pace: failing('node-a'),
      helpers: [{ node: 'node-c', pace: failing('node-c') }],
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({
      code: 'IO_ERROR',
      message: expect.stringMatching(/every holder dropped: node node-[ac]: .*; node node-[ac]: /),
    });
    await fx.expectNothingAtDestination();
  });

  it('stops every holder on cancel and leaves nothing at the destination', async () => {
    const cancel = new AbortController();
    const error = await copy({
      signal: cancel.signal,
      helpers: ['node-c', 'node-d'].map((node) => ({
        node,
        pace: pace(node, () => {
          if (read[node]! >= PIECE) cancel.abort(new ReasonError('CANCELLED', 'cancelled by its requester'));
        }),
      })),
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: 'CANCELLED' });
    await fx.expectNothingAtDestination();
  });

  it('checkpoints only the contiguous verified prefix, and a later attempt resumes it with helpers', async () => {
    const tmp = store.nodeLayout('node-b').tmp;
    const partial = path.join(tmp, `${IMAGE}~attempt-1.part`);
    // A first attempt that dies (frozen for good) with the helpers' pieces 1 and 2 never written: the
    // source writes pieces 0 and 3.
    const freezing = (node: string) => ({
      afterRead: async () => {},
      beforeWrite: () =>
        new Promise<void>((resolve, reject) => {
          if (node === 'node-a') return resolve();
          frozen.push(() => reject(new Error(`thawed ${node} at the end of the test`)));
        }),
    });
    dying = copy({
      pace: freezing('node-a'),
      helpers: ['node-c', 'node-d'].map((node) => ({ node, pace: freezing(node) })),
    }).catch(() => undefined);
    const verified = async () =>
      JSON.parse(await fsp.readFile(path.join(tmp, `${IMAGE}~attempt-1.origin.part`), 'utf8')).verified
        ?.bytes as number | undefined;
    const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    for (let i = 0; i < 200 && (await fsp.stat(partial).catch(() => undefined))?.size !== SIZE; i++)
      await sleep(10);
    for (let i = 0; i < 200 && ((await verified()) ?? 0) < PIECE; i++) await sleep(10);
    await sleep(50);
    // Pieces 0 and 3 are written, and only piece 0 is recorded: the prefix without a gap.
    expect((await fsp.stat(partial)).size).toBe(SIZE);
    expect(await verified()).toBe(PIECE);

    const outcome = await copy({ attemptId: 'attempt-2', resume: true });
    expect(outcome.resumedBytes).toBe(PIECE);
    expect(HOLDERS.reduce((sum, node) => sum + read[node]!, 0)).toBe(SIZE - PIECE);
    expect(await published()).toBe(sha256);
  });
});
