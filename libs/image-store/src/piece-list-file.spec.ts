import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  MEBIBYTE,
  exists,
  listDir,
  pieceDigestsOfFile,
  writeRandomFile,
} from '../../../test/support/image-store-fixtures';
import { uniqueTag } from './durable-fs';
import { ImageStore } from './image-store';
import { PIECE_BYTES, PIECE_BYTES_MIN, serializePieceList } from './piece-list';
import { IMAGE, useStoreFixture } from './store.fixture';

const SIZE = 2 * MEBIBYTE + 3; // three pieces of 1 MiB (pieceBytesFor), the last one short

describe.each([
  ['on the main thread', 0],
  ['in copy workers', 2],
])('piece lists of published images, %s', (_where, copyWorkers) => {
  const fx = useStoreFixture();
  let store: ImageStore;
  beforeEach(() => {
    store = new ImageStore({ root: fx.root, copyWorkers, onWarning: (m) => fx.warnings.push(m) });
  });
  afterEach(() => store.close());

  const piecesPath = (node: string, imageId = IMAGE) =>
    path.join(store.nodeLayout(node).images, `${imageId}~pieces.json`);
  const digestsOf = (node: string, imageId = IMAGE) =>
    pieceDigestsOfFile(store.entries.imagePath(node, imageId), PIECE_BYTES_MIN);

  it('a copy writes the list of the bytes it published, beside the meta and before it', async () => {
    const sha256 = await fx.seed('node-a', SIZE);
    const seen: Array<[string, boolean, boolean]> = [];
    const outcome = await store.copies.copyImage({
      imageId: IMAGE,
      source: 'node-a',
      destination: 'node-b',
      attemptId: 'attempt-1',
      beforeIrreversibleStep: async (step) => {
        seen.push([
          step,
          await exists(piecesPath('node-b')),
          await exists(store.entries.metaPath('node-b', IMAGE)),
        ]);
      },
    });
    expect(outcome.status).toBe('copied');
    // At 'meta' the list is there and the meta not yet: a meta never points at a missing list.
    expect(seen).toEqual([
      ['publish', false, false],
      ['meta', true, false],
    ]);
    const read = await store.copies.readPieceList('node-b', IMAGE);
    expect(read.problem).toBeUndefined();
    expect(read.list).toEqual({
      v: 1,
      imageId: IMAGE,
      size: SIZE,
      sha256,
      pieceBytes: PIECE_BYTES_MIN,
      pieces: await digestsOf('node-b'),
    });
    expect(read.list!.pieces).toHaveLength(3);
    expect(await listDir(store.nodeLayout('node-b').images)).toEqual([
      IMAGE,
      `${IMAGE}.meta.json`,
      `${IMAGE}~pieces.json`,
    ]);
    expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([]);
  });

  it('an import from a file and from a stream of chunks of any size write it too', async () => {
    const file = path.join(fx.root, 'staging');
    const sha256 = await writeRandomFile(file, SIZE);
    await store.imports.importImage('node-a', 'from-file.img', file);
    const bytes = await fsp.readFile(file);
    async function* oddChunks() {
      for (let at = 0; at < bytes.length; at += 777_777) yield bytes.subarray(at, at + 777_777);
    }
    await store.imports.importStream('node-b', 'from-stream.img', oddChunks(), 'a stream', {
      expected: { sha256 },
    });
    // A stream of unknown size is hashed in the largest pieces, before its size is known (pieceBytesFor).
    for (const [node, imageId, pieceBytes] of [
      ['node-a', 'from-file.img', PIECE_BYTES_MIN],
      ['node-b', 'from-stream.img', PIECE_BYTES],
    ] as const) {
      const read = await store.copies.readPieceList(node, imageId);
      expect(read.list).toMatchObject({
        sha256,
        size: SIZE,
        pieceBytes,
        pieces: await pieceDigestsOfFile(store.entries.imagePath(node, imageId), pieceBytes),
      });
    }
  });

  it('gives no list when it is missing, invalid or another image’s; only an invalid one is logged, once', async () => {
    const sha256 = await fx.seed('node-a', SIZE);
    const list = piecesPath('node-a');
    const good = await fsp.readFile(list, 'utf8');

    await fsp.rm(list);
    expect(await store.copies.readPieceList('node-a', IMAGE)).toEqual({ problem: 'piece list missing' });
    expect(await store.copies.readPieceList('node-a', IMAGE)).toEqual({ problem: 'piece list missing' });
    // Images of a release without lists have none: a cell being upgraded is full of them.
    expect(fx.warnings.splice(0)).toEqual([]);

    await fsp.writeFile(list, good.replace(/"pieceBytes": \d+/, '"pieceBytes": 3'));
    expect((await store.copies.readPieceList('node-a', IMAGE)).problem).toMatch(
      /^piece list invalid: pieceBytes: must be at least 1048576; /,
    );
    await store.copies.readPieceList('node-a', IMAGE);
    expect(fx.warnings.splice(0)).toEqual([expect.stringMatching(/^invalid file .*pieceBytes: must be/)]);

    // Valid, but of other bytes (an older image's list left by a release that does not know lists).
    const otherSha256 = sha256.replace(/^./, (c) => (c === '0' ? '1' : '0'));
    await fsp.writeFile(list, serializePieceList({ ...JSON.parse(good), sha256: otherSha256 }));
    expect((await store.copies.readPieceList('node-a', IMAGE)).problem).toMatch(
      /^piece list of another image: sha256: is [0-9a-f]{64}, the image's meta says /,
    );
    await store.copies.readPieceList('node-a', IMAGE);
    expect(fx.warnings.splice(0)).toEqual([]);

    // An image that is not verified has no list to give, whatever lies beside it.
    await fsp.writeFile(list, good);
    await fsp.truncate(store.entries.imagePath('node-a', IMAGE), 5);
    expect((await store.copies.readPieceList('node-a', IMAGE)).problem).toMatch(
      /^the image is not verified: image file has 5 bytes/,
    );
  });

  it('a list that cannot be written is logged, and the image is published without it', async () => {
    await fx.seed('node-a', SIZE);
    await fsp.mkdir(store.nodeLayout('node-b').images);
    await fsp.mkdir(piecesPath('node-b')); // the rename of the list onto it fails
    const outcome = await store.copies.copyImage({
      imageId: IMAGE,
      source: 'node-a',
      destination: 'node-b',
      attemptId: 'attempt-1',
    });
    expect(outcome.status).toBe('copied');
    expect(await store.copies.verifiedImage('node-b', IMAGE)).toBeDefined();
    expect(fx.warnings.splice(0)).toEqual([
      expect.stringMatching(
        /^node node-b, image .*: the piece list was not written \(.*\); it is shared as a whole only$/,
      ),
    ]);
    expect((await store.copies.readPieceList('node-b', IMAGE)).problem).toBe(
      'piece list invalid: not a regular file',
    );
    fx.warnings.splice(0);
    expect(await listDir(store.nodeLayout('node-b').tmp)).toEqual([]);
  });

  it('goes with its image when the image is deleted; a crash’s temp file is a partial like any', async () => {
    await fx.seed('node-a', SIZE);
    const tmp = store.nodeLayout('node-a').tmp;
    await fsp.mkdir(tmp, { recursive: true });
    const leftover = path.join(tmp, `${IMAGE}~${uniqueTag('pieces')}.part`);
    await fsp.writeFile(leftover, '{"v":1');
    expect((await store.entries.listTmp('node-a')).map((t) => t.path)).toEqual([leftover]);
    const deleted = await store.entries.deleteImage('node-a', IMAGE);
    expect(deleted).toMatchObject({ removedMeta: true, removedImage: true, tmpRemoved: 1 });
    expect(await listDir(store.nodeLayout('node-a').images)).toEqual([]);
  });
});
