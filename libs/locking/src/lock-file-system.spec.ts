import { describe, expect, it } from 'vitest';
import { type LockFileSystem, removeFolder, removeTree } from './lock-file-system';

const gone = (code: string) => Object.assign(new Error(`${code}: gone`), { code });

/** A file system whose every look and removal says the folder is gone, in the words of `code`. */
function goneWith(code: string): { fs: LockFileSystem; calls: string[] } {
  const calls: string[] = [];
  const fs = {
    readdir: async (dir: string) => {
      calls.push(`readdir ${dir}`);
      throw gone(code);
    },
    rmdir: async (dir: string) => {
      calls.push(`rmdir ${dir}`);
      throw gone(code);
    },
    rm: async (dir: string) => {
      calls.push(`rm ${dir}`);
    },
    openFolder: async () => ({ sync: async () => undefined, close: async () => undefined }),
  } as unknown as LockFileSystem;
  return { fs, calls };
}

describe('removing lock folders another client removed meanwhile', () => {
  it('ESTALE as Node reports it (no name in libuv: errno -116) is gone too', async () => {
    const unnamed = Object.assign(new Error('Unknown system error -116'), { errno: -116 });
    const fs = { ...goneWith('x').fs, readdir: async () => Promise.reject(unnamed) } as LockFileSystem;
    await expect(removeTree(fs, '/c/x')).resolves.toBeUndefined();
  });

  for (const code of ['ENOENT', 'ESTALE'])
    it(`${code} (GlusterFS and NFS say ESTALE) is a folder already gone, not a failure`, async () => {
      const tree = goneWith(code);
      await expect(removeTree(tree.fs, '/c/n1/locks/~retired~img~A')).resolves.toBeUndefined();
      expect(tree.calls).toEqual(['readdir /c/n1/locks/~retired~img~A']);
      const folder = goneWith(code);
      await expect(removeFolder(folder.fs, '/c/n1/locks/img/g-2')).resolves.toBeUndefined();
      expect(folder.calls).toEqual(['rmdir /c/n1/locks/img/g-2']);
    });

  it('any other error still fails the removal', async () => {
    await expect(removeTree(goneWith('EIO').fs, '/c/x')).rejects.toThrow('EIO');
  });
});
