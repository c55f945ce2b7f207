import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EPOCH_NAME } from './key-directory';
import { makeKeyFolder, startKeyEpoch } from './key-folder-creation';
import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';

const KEY = { node: 'n1', imageId: 'img' };

describe('key folder creation', () => {
  let root: string;
  let dir: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-key-folder-'));
    dir = path.join(root, 'n1', 'locks', 'img');
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('makes the whole path, node folder included, when the node folder is not required', async () => {
    expect(await makeKeyFolder(nodeLockFileSystem, KEY, dir, false)).toBe(true);
    expect((await fsp.stat(dir)).isDirectory()).toBe(true);
  });

  it('refuses, retryably, under a missing node folder when it is required, and makes nothing', async () => {
    await expect(makeKeyFolder(nodeLockFileSystem, KEY, dir, true)).rejects.toMatchObject({
      code: 'LOCK_LOST',
      retryable: true,
    });
    expect(await fsp.readdir(root)).toEqual([]);
  });

  it('makes locks/ and the key folder under a node folder that exists, and again when they exist', async () => {
    await fsp.mkdir(path.join(root, 'n1'));
    expect(await makeKeyFolder(nodeLockFileSystem, KEY, dir, true)).toBe(true);
    expect(await makeKeyFolder(nodeLockFileSystem, KEY, dir, true)).toBe(true);
    expect(await fsp.readdir(path.join(root, 'n1', 'locks'))).toEqual(['img']);
  });

  it('answers false (look again) for an ENOENT under a node folder that exists', async () => {
    await fsp.mkdir(path.join(root, 'n1'));
    const notShownYet: LockFileSystem = {
      ...nodeLockFileSystem,
      mkdir: () => Promise.reject(Object.assign(new Error('ENOENT'), { code: 'ENOENT' })),
    };
    expect(await makeKeyFolder(notShownYet, KEY, dir, true)).toBe(false);
    expect(await makeKeyFolder(notShownYet, KEY, dir, false)).toBe(false);
  });

  it('starts an epoch once; a second start finds it and agrees', async () => {
    expect(await startKeyEpoch(nodeLockFileSystem, KEY, dir, false)).toBe(true);
    const first = await fsp.stat(path.join(dir, EPOCH_NAME), { bigint: true });
    expect(await startKeyEpoch(nodeLockFileSystem, KEY, dir, false)).toBe(true);
    const again = await fsp.stat(path.join(dir, EPOCH_NAME), { bigint: true });
    expect(again.mtimeNs).toBe(first.mtimeNs);
  });

  it('answers false for a phantom EEXIST of the epoch (nothing there)', async () => {
    const phantom: LockFileSystem = {
      ...nodeLockFileSystem,
      mkdir: (target, options) =>
        path.basename(target) === EPOCH_NAME
          ? Promise.reject(Object.assign(new Error('EEXIST'), { code: 'EEXIST' }))
          : nodeLockFileSystem.mkdir(target, options),
    };
    expect(await startKeyEpoch(phantom, KEY, dir, false)).toBe(false);
  });
});
