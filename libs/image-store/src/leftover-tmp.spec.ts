import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { listDir } from '../../../test/support/image-store-fixtures';
import type { ImageStore } from './image-store';
import { isLeftover, recordAttemptId, tmpFiles } from './leftover-tmp';
import { useStoreFixture } from './store.fixture';

describe('removeLeftoverTmp', () => {
  const fx = useStoreFixture();
  let store: ImageStore;
  beforeEach(() => {
    store = fx.store;
  });

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
    expect(await store.entries.removeLeftoverTmp('node-b', 'img')).toBe(2);
    expect(await listDir(tmp)).toEqual(['img.v2~attempt-1.part', 'other~a.b.c.part', 'unrelated.txt']);
    expect(await store.entries.removeLeftoverTmp('node-b', 'img.v2')).toBe(1);
    expect(await store.entries.removeLeftoverTmp('node-b', 'img')).toBe(0);
  });

  it('removes every file in tmp when no image is named, and leaves folders alone', async () => {
    const tmp = await leave(['img~attempt-1.part', 'other~x.part', 'unrelated.txt']);
    await fsp.mkdir(path.join(tmp, 'a-folder'));
    expect(await store.entries.removeLeftoverTmp('node-b')).toBe(3);
    expect(await listDir(tmp)).toEqual(['a-folder']);
  });

  it('keeps recent files when olderThanMs is given', async () => {
    const tmp = await leave(['old~a.part', 'new~a.part']);
    const anHourAgo = new Date(Date.now() - 3_600_000);
    await fsp.utimes(path.join(tmp, 'old~a.part'), anHourAgo, anHourAgo);
    expect(await store.entries.removeLeftoverTmp('node-b', undefined, { olderThanMs: 60_000 })).toBe(1);
    expect(await listDir(tmp)).toEqual(['new~a.part']);
  });

  it('answers 0 when the node has no tmp folder', async () => {
    expect(await store.entries.removeLeftoverTmp('node-b')).toBe(0);
  });
});

describe('which files of a tmp folder are leftovers', () => {
  it('partial files are named for a valid image id; anything else in tmp/ is not ours', () => {
    expect(
      tmpFiles('/c/n/tmp', ['img~attempt-1.part', 'unrelated.txt', '..~x.part', 'img.v2~meta-1.part']),
    ).toEqual([
      { imageId: 'img', path: '/c/n/tmp/img~attempt-1.part' },
      { imageId: 'img.v2', path: '/c/n/tmp/img.v2~meta-1.part' },
    ]);
  });

  it.each<[string, string | undefined]>([
    ['img~attempt-1.origin.part', 'attempt-1'],
    ['img~attempt-1.part', undefined],
    ['img~meta-123.part', undefined],
    ['unrelated.txt', undefined],
  ])('the resume record of %s is attempt %s', (name, attemptId) => {
    expect(recordAttemptId(name)).toBe(attemptId);
  });

  const file = (mtimeMs: number, isFile = true) => ({ mtimeMs, isFile: () => isFile });
  it.each<[string, ReturnType<typeof file>, number | undefined, boolean]>([
    ['any file without a cutoff', file(5_000), undefined, true],
    ['a file not touched since the cutoff', file(1_000), 1_000, true],
    ['a file touched after the cutoff', file(1_001), 1_000, false],
    ['a folder, even an old one', file(0, false), undefined, false],
  ])('%s', (_name, stat, cutoff, leftover) => {
    expect(isLeftover(stat, cutoff)).toBe(leftover);
  });
});
