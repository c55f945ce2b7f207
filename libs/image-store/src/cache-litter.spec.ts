import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { isLitterName, isOldLitter } from './cache-litter';
import type { ImageStore } from './image-store';
import { useStoreFixture } from './store.fixture';

describe('listLitter, removeLitter', () => {
  const fx = useStoreFixture();
  const { seed } = fx;
  let store: ImageStore;
  beforeEach(() => {
    store = fx.store;
  });

  it('lists hidden files a network mount left (never entries) and removes them only once old', async () => {
    await seed('node-a', 30, 'ok');
    const images = store.nodeLayout('node-a').images;
    await fsp.writeFile(path.join(images, '.fuse_hidden0000000400000001'), '{"v":1}');
    await fsp.writeFile(path.join(images, '.nfs00000000001234'), 'ab');
    await fsp.writeFile(path.join(images, '.other'), '');
    expect((await store.entries.listEntries('node-a')).map((e) => e.imageId)).toEqual(['ok']);
    const litter = await store.entries.listLitter('node-a');
    expect(litter.map((l) => [l.name, l.bytes])).toEqual([
      ['.fuse_hidden0000000400000001', 7],
      ['.nfs00000000001234', 2],
    ]);
    expect(await store.entries.removeLitter('node-a', 60_000)).toEqual([]);
    expect(await store.entries.removeLitter('node-a', 60_000, Date.now() + 120_000)).toHaveLength(2);
    expect((await fsp.readdir(images)).sort()).toEqual(['.other', 'ok', 'ok.meta.json', 'ok~pieces.json']);
    expect(await store.entries.listLitter('node-z')).toEqual([]);
  });
});

describe('which names are litter, and when it may go', () => {
  it.each<[string, boolean]>([
    ['.fuse_hidden0000000400000001', true],
    ['.nfs00000000001234', true],
    ['.other', false],
    ['img.fuse_hidden', false],
  ])('%s is litter: %s', (name, litter) => {
    expect(isLitterName(name)).toBe(litter);
  });

  it.each<[number, boolean]>([
    [59_999, false],
    [60_000, true],
    [60_001, true],
  ])('hidden %s ms ago, with 60 s to wait: removed %s', (ageMs, old) => {
    expect(isOldLitter({ changedMs: 1_000_000 }, 60_000, 1_000_000 + ageMs)).toBe(old);
  });
});
