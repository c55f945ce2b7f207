import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { MEBIBYTE, exists, listDir } from '../../../test/support/image-store-fixtures';
import type { CacheEntry } from './cache-listing';
import { isJudgedFile, sameImage } from './image-delete';
import type { ImageMeta } from './image-meta';
import type { ImageStore } from './image-store';
import { IMAGE, useStoreFixture } from './store.fixture';

describe('deleteImage (the cache cleaner, under the exclusive lock)', () => {
  const fx = useStoreFixture();
  const { seed, expectConductorError } = fx;
  let store: ImageStore;
  beforeEach(() => {
    store = fx.store;
  });

  it('removes meta, image and partial copies, and the image is no longer verified', async () => {
    await seed('node-a', MEBIBYTE + 5);
    const tmp = store.nodeLayout('node-a').tmp;
    await fsp.writeFile(path.join(tmp, `${IMAGE}~dead-attempt.part`), 'partial');
    await fsp.writeFile(path.join(tmp, 'other.img~x.part'), 'other');
    expect(await store.entries.deleteImage('node-a', IMAGE)).toEqual({
      removedMeta: true,
      removedImage: true,
      bytes: MEBIBYTE + 5,
      tmpRemoved: 1,
    });
    expect(await store.copies.verifiedImage('node-a', IMAGE)).toBeUndefined();
    expect(await listDir(store.nodeLayout('node-a').images)).toEqual([]);
    expect(await listDir(tmp)).toEqual(['other.img~x.part']);
  });

  it('finishes an interrupted delete from any partial state', async () => {
    await seed('node-a', 100, 'meta-only');
    await fsp.rm(store.entries.imagePath('node-a', 'meta-only'));
    await seed('node-a', 200, 'image-only');
    await fsp.rm(store.entries.metaPath('node-a', 'image-only'));
    expect(await store.entries.deleteImage('node-a', 'meta-only')).toEqual({
      removedMeta: true,
      removedImage: false,
      bytes: 0,
      tmpRemoved: 0,
    });
    expect(await store.entries.deleteImage('node-a', 'image-only')).toEqual({
      removedMeta: false,
      removedImage: true,
      bytes: 200,
      tmpRemoved: 0,
    });
    expect(await store.entries.deleteImage('node-a', 'never-there')).toEqual({
      removedMeta: false,
      removedImage: false,
      bytes: 0,
      tmpRemoved: 0,
    });
    expect(await store.entries.deleteImage('node-new', IMAGE)).toMatchObject({
      removedMeta: false,
      removedImage: false,
    });
    expect(await listDir(store.nodeLayout('node-a').images)).toEqual([]);
  });

  it('refuses a folder at the image path and bad ids', async () => {
    await fsp.mkdir(store.entries.imagePath('node-a', IMAGE), { recursive: true });
    await expectConductorError(store.entries.deleteImage('node-a', IMAGE), 'IO_ERROR');
    expect(await exists(store.entries.imagePath('node-a', IMAGE))).toBe(true);
    await expectConductorError(store.entries.deleteImage('node-a', '../node-b/img'), 'INVALID_REQUEST');
    await expectConductorError(store.entries.deleteImage('..', IMAGE), 'INVALID_REQUEST');
  });

  it('a late delete (the judged entry published again meanwhile) leaves the new image in place', async () => {
    await seed('node-a', 30, 'img');
    const judged = await store.entries.entry('node-a', 'img');
    // Another holder took the lock over, deleted and published the image again (other bytes).
    await store.entries.deleteImage('node-a', 'img');
    await seed('node-a', 40, 'img');
    const republished = await store.entries.entry('node-a', 'img');
    expect(await store.entries.deleteImage('node-a', 'img', judged)).toMatchObject({
      changed: true,
      removedMeta: false,
      removedImage: false,
    });
    expect(await store.entries.entry('node-a', 'img')).toEqual(republished);
    expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
  });

  it('a late delete that finds the judged meta beside a new image removes the meta only', async () => {
    await seed('node-a', 30, 'img');
    const judged = await store.entries.entry('node-a', 'img');
    // A publish between its rename and its meta write: new bytes, the old meta still there.
    const file = store.entries.imagePath('node-a', 'img');
    await fsp.writeFile(`${file}.new`, Buffer.alloc(30, 9));
    await fsp.utimes(
      `${file}.new`,
      new Date(judged.modifiedMs! + 5_000),
      new Date(judged.modifiedMs! + 5_000),
    );
    await fsp.rename(`${file}.new`, file);
    expect(await store.entries.deleteImage('node-a', 'img', judged)).toMatchObject({
      changed: true,
      removedMeta: true,
      removedImage: false,
    });
    expect(await fsp.readFile(file)).toEqual(Buffer.alloc(30, 9));
    expect(await exists(store.entries.metaPath('node-a', 'img'))).toBe(false);
  });

  it('deletes the judged entry itself, orphans included', async () => {
    await seed('node-a', 30, 'img');
    await seed('node-a', 20, 'orphan');
    await fsp.rm(store.entries.metaPath('node-a', 'orphan'));
    for (const id of ['img', 'orphan']) {
      const judged = await store.entries.entry('node-a', id);
      expect((await store.entries.deleteImage('node-a', id, judged)).changed).toBeUndefined();
      expect(await store.entries.entry('node-a', id)).toEqual({
        imageId: id,
        problem: expect.any(String),
        bytes: 0,
      });
    }
    expect(await fsp.readdir(store.nodeLayout('node-a').images)).toEqual([]);
    expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
  });
});

describe('whether a part moved aside is the judged entry', () => {
  const judgedMeta: ImageMeta = {
    v: 1,
    imageId: 'img',
    size: 30,
    sha256: 'ab'.repeat(32),
    createdAt: '2025-01-02T03:04:05.000Z',
    lastUsedAt: '2025-01-02T03:04:05.000Z',
    attemptId: 'attempt-1',
    fencingToken: 7,
  };

  it.each<[string, ImageMeta | undefined, boolean]>([
    ['the judged meta: the same image', { ...judgedMeta }, true],
    [
      'the judged meta used since (lastUsedAt is no part of identity)',
      { ...judgedMeta, lastUsedAt: '2026-01-01T00:00:00.000Z' },
      true,
    ],
    ['no readable meta', undefined, false],
    ['other bytes', { ...judgedMeta, sha256: 'cd'.repeat(32) }, false],
    ['another size', { ...judgedMeta, size: 31 }, false],
    ['published again with the same bytes', { ...judgedMeta, createdAt: '2025-01-02T03:04:06.000Z' }, false],
    ['another attempt', { ...judgedMeta, attemptId: 'attempt-2' }, false],
    ['a later holder of the lock', { ...judgedMeta, fencingToken: 8 }, false],
  ])('meta: %s', (_name, moved, same) => {
    expect(sameImage(moved, judgedMeta)).toBe(same);
  });

  const judgedFile: CacheEntry = { imageId: 'img', bytes: 30, modifiedMs: 1_000 };
  it.each<[string, { size: number; mtimeMs: number }, boolean]>([
    ['the judged file', { size: 30, mtimeMs: 1_000 }, true],
    ['another size', { size: 31, mtimeMs: 1_000 }, false],
    ['the same size written later', { size: 30, mtimeMs: 6_000 }, false],
  ])('image file: %s', (_name, moved, judged) => {
    expect(isJudgedFile(moved, judgedFile)).toBe(judged);
  });

  it('an entry judged without a file matches no moved file', () => {
    expect(isJudgedFile({ size: 0, mtimeMs: 1_000 }, { imageId: 'img', bytes: 0 })).toBe(false);
  });
});
