import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { completedResult } from '../../../test/support/image-store-fixtures';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import { linkUnlessPresent, makeCellFolder, writeFileOnce } from './durable-fs';
import { ImageStore } from './image-store';

/*
 * First writer wins by link(2). On sshfs a link to a taken name fails EPERM, not EEXIST (seen when two
 * conductors started on one sshfs mount at once: the second one died making the cell's header key).
 */
describe('first writer wins by link', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await makeTempDir('durable-fs');
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await removeDir(dir);
  });

  const sshfsLink = () =>
    vi
      .spyOn(fsp, 'link')
      .mockRejectedValue(Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' }));

  it('links a new name, and says taken for a name that is there (EEXIST)', async () => {
    await fsp.writeFile(path.join(dir, 'a'), 'mine');
    expect(await linkUnlessPresent(path.join(dir, 'a'), path.join(dir, 'b'))).toBe(true);
    expect(await linkUnlessPresent(path.join(dir, 'a'), path.join(dir, 'b'))).toBe(false);
  });

  it('takes an error as taken when the name is there afterwards (sshfs: EPERM), and throws it otherwise', async () => {
    await fsp.writeFile(path.join(dir, 'a'), 'mine');
    await fsp.writeFile(path.join(dir, 'b'), 'theirs');
    sshfsLink();
    expect(await linkUnlessPresent(path.join(dir, 'a'), path.join(dir, 'b'))).toBe(false);
    await expect(linkUnlessPresent(path.join(dir, 'a'), path.join(dir, 'c'))).rejects.toThrow(/EPERM/);
  });

  it('writeFileOnce: the second writer on sshfs gets false, the first one’s content stays, no temporary file', async () => {
    expect(await writeFileOnce(dir, 'answer.json', 'first', false)).toBe(true);
    sshfsLink();
    expect(await writeFileOnce(dir, 'answer.json', 'second', false)).toBe(false);
    expect(await fsp.readFile(path.join(dir, 'answer.json'), 'utf8')).toBe('first');
    expect(await fsp.readdir(dir)).toEqual(['answer.json']);
  });
});

/*
 * A network mount that is not there leaves an empty local folder at CACHE_ROOT's path (seen on the CephFS
 * hosts bed, seed 24301: a conductor restarted while its host's mount was down wrote there, and ceph-fuse
 * then refused to mount again, "mountpoint is not empty"). The cell's folders are never made in it.
 */

describe('makeCellFolder', () => {
  let root: string;
  beforeEach(async () => {
    root = await makeTempDir('cell-folder');
  });
  afterEach(async () => {
    await removeDir(root);
  });

  it('makes a folder and its parents in a cell that holds anything', async () => {
    await fsp.mkdir(path.join(root, 'node-1'));
    const dir = path.join(root, '.icc-answers', 'by-time', '7');
    await makeCellFolder(root, dir);
    await makeCellFolder(root, dir); // there already: no error
    expect((await fsp.stat(dir)).isDirectory()).toBe(true);
  });

  it('makes nothing in an empty CACHE_ROOT and fails ENOENT, saying why', async () => {
    const failed = makeCellFolder(root, path.join(root, '.icc-answers', 'ab'));
    await expect(failed).rejects.toMatchObject({
      code: 'ENOENT',
      message: expect.stringMatching(/is empty/),
    });
    expect(await fsp.readdir(root)).toEqual([]);
  });

  it('never makes CACHE_ROOT itself, nor a folder outside it', async () => {
    const gone = path.join(root, 'gone');
    await expect(makeCellFolder(gone, path.join(gone, '.icc-jobs'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
    await expect(makeCellFolder(gone, root)).rejects.toThrow(/not a folder below/);
    expect(await fsp.readdir(root)).toEqual([]);
  });

  it.each([
    ['a request answer', (store: ImageStore) => store.answers.record(completedResult('r-1'))],
    ['a cancel', (store: ImageStore) => store.jobs.cancelRequest('r-2')],
  ])('writes %s nowhere in an empty CACHE_ROOT: the write fails', async (_what, write) => {
    const store = new ImageStore({ root, fsync: false });
    await expect(write(store)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await fsp.readdir(root)).toEqual([]);
  });
});
