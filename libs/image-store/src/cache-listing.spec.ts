import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { entryIds, entryProblem, metaFileIds } from './cache-listing';
import type { ImageMeta } from './image-meta';
import { ImageStore } from './image-store';
import { useStoreFixture } from './store.fixture';

describe('listNodes, listImages, listEntries', () => {
  const fx = useStoreFixture();
  const { warnings, seed } = fx;
  let root: string;
  let store: ImageStore;
  beforeEach(() => {
    root = fx.root;
    store = fx.store;
  });

  it('lists node folders and verified images, ignoring anything else', async () => {
    await seed('node-b', 10, 'img.b');
    await seed('node-a', 10, 'img.a2');
    await seed('node-a', 20, 'img.a1');
    await seed('node-a', 30, 'img.broken');
    await fsp.rm(store.entries.imagePath('node-a', 'img.broken'));
    await fsp.writeFile(path.join(root, 'a-file'), '');
    await fsp.mkdir(path.join(root, '.hidden'));
    await fsp.mkdir(path.join(root, 'bad name'));
    await fsp.writeFile(path.join(store.nodeLayout('node-a').images, 'stray.meta.json'), '{}');

    expect(await store.entries.listNodes()).toEqual(['node-a', 'node-b']);
    const images = await store.entries.listImages('node-a');
    expect(images.map((meta) => [meta.imageId, meta.size])).toEqual([
      ['img.a1', 20],
      ['img.a2', 10],
    ]);
    expect(warnings).toEqual([expect.stringContaining('/node-a/images/stray.meta.json: v: ')]);
    warnings.length = 0;
    expect(await store.entries.listImages('node-c')).toEqual([]);
    // The cheap listing (one readdir) names every meta file, verified or not.
    expect(await store.entries.listImageIds('node-a')).toEqual(['img.a1', 'img.a2', 'img.broken', 'stray']);
    expect(await store.entries.listImageIds('node-c')).toEqual([]);
  });

  it('folder signatures: changed by an image published or deleted and by a node added; none when missing', async () => {
    expect(await store.entries.imagesFolderStamp('node-a')).toBeUndefined();
    await seed('node-a', 10, 'img.a1');
    const first = await store.entries.imagesFolderStamp('node-a');
    expect(first).toEqual(expect.any(String));
    expect(await store.entries.imagesFolderStamp('node-a')).toBe(first);
    await seed('node-a', 10, 'img.a2');
    const second = await store.entries.imagesFolderStamp('node-a');
    expect(second).not.toBe(first);
    await fsp.rm(store.entries.metaPath('node-a', 'img.a1'));
    expect(await store.entries.imagesFolderStamp('node-a')).not.toBe(second);
    const root0 = await store.entries.rootStamp();
    await seed('node-b', 10, 'img.b');
    expect(await store.entries.rootStamp()).not.toBe(root0);
    expect(await new ImageStore({ root: path.join(root, 'missing') }).entries.rootStamp()).toBeUndefined();
  });

  it('lists nothing for a missing root', async () => {
    expect(await new ImageStore({ root: path.join(root, 'missing') }).entries.listNodes()).toEqual([]);
  });

  it('lists verified images and orphans with their bytes on disk', async () => {
    await seed('node-a', 30, 'ok');
    await seed('node-a', 40, 'no-meta');
    await fsp.rm(store.entries.metaPath('node-a', 'no-meta'));
    await seed('node-a', 50, 'no-image');
    await fsp.rm(store.entries.imagePath('node-a', 'no-image'));
    await seed('node-a', 60, 'truncated');
    await fsp.truncate(store.entries.imagePath('node-a', 'truncated'), 6);
    await fsp.writeFile(path.join(store.nodeLayout('node-a').images, 'bad name'), '');
    const entries = await store.entries.listEntries('node-a');
    expect(entries.map((e) => [e.imageId, e.meta?.size, e.bytes, e.modifiedMs === undefined])).toEqual([
      ['no-image', undefined, 0, true],
      ['no-meta', undefined, 40, false],
      ['ok', 30, 30, false],
      ['truncated', undefined, 6, false],
    ]);
    expect(await store.entries.listEntries('node-z')).toEqual([]);
  });
});

describe('what a listing makes of the names in an images folder', () => {
  const names = ['b.img', 'b.img.meta.json', 'a.meta.json', '.nfs0001', 'bad name', 'c.v2.meta.json', 'c.v2'];

  it('meta file ids: each image with a meta file, in the order given; other names left out', () => {
    expect(metaFileIds(names)).toEqual(['b.img', 'a', 'c.v2']);
  });

  it('entry ids: each image with an image file or a meta file, once, sorted', () => {
    expect(entryIds(names)).toEqual(['a', 'b.img', 'c.v2']);
  });
});

describe('why an entry is not verified', () => {
  const meta = { size: 30 } as ImageMeta;
  const file = (size: number, isFile = true) => ({ size, isFile: () => isFile });

  it.each<[string, Parameters<typeof entryProblem>, string]>([
    [
      'an invalid meta file',
      [{ invalid: 'size: too small', mtimeMs: 1 }, file(30), undefined],
      'meta file invalid: size: too small',
    ],
    [
      'no meta file',
      [{ missing: true }, file(30), undefined],
      'meta file missing (an interrupted publish or delete)',
    ],
    ['no image file', [{ value: meta }, undefined, meta], 'image file missing'],
    [
      'a folder at the image path',
      [{ value: meta }, file(4096, false), meta],
      'image path is not a regular file',
    ],
    ['a truncated image', [{ value: meta }, file(6), meta], 'image file has 6 bytes but its meta says 30'],
  ])('%s', (_name, args, problem) => {
    expect(entryProblem(...args)).toBe(problem);
  });
});
