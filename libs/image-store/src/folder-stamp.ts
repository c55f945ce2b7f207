import { promises as fsp } from 'node:fs';
import { isErrno, mapIoError } from './fs-errors';

/**
 * A folder's signature: identity, mtime, ctime and size, in one stat. It changes when an entry is added to
 * or removed from the folder on every file system CACHE_ROOT may be on (local, NFS, CephFS, GlusterFS,
 * sshfs), so a reader that keeps what it listed under a signature lists again only when it changed. Mtimes
 * may be whole seconds (sshfs): a change within the same second as the one that set the signature leaves
 * it as it was; the reader must allow for that (the holder index does, see holder-index.ts).
 * Undefined when the folder is missing.
 */
export async function folderStamp(dir: string, what: string): Promise<string | undefined> {
  try {
    const stat = await fsp.stat(dir, { bigint: true });
    return `${stat.ino}:${stat.mtimeNs}:${stat.ctimeNs}:${stat.size}`;
  } catch (error) {
    if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
    throw mapIoError(error, { side: 'cache', what }, 'reading a folder signature');
  }
}
