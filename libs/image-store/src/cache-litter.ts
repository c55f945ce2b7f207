import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { NodeLayout } from './cache-layout';
import { readImagesFolder } from './cache-listing';
import { unlinkIfPresent } from './store-context';

/** Name prefixes of files hidden by a network file system (sshfs without hard_remove, NFS silly renames). */
export const LITTER_PREFIXES = ['.fuse_hidden', '.nfs'];

/** A file a network file system hid in the images folder (see CacheEntries.listLitter). */
export interface Litter {
  name: string;
  bytes: number;
  /** The ctime: when it was hidden (a rename sets it), not the old file's mtime. */
  changedMs: number;
}

/** The litter of the node's images folder, by name. */
export async function listLitter(layout: NodeLayout): Promise<Litter[]> {
  const litter: Litter[] = [];
  for (const name of await readImagesFolder(layout)) {
    if (!isLitterName(name)) continue;
    const stat = await fsp.lstat(path.join(layout.images, name)).catch(() => undefined);
    if (stat?.isFile()) litter.push({ name, bytes: stat.size, changedMs: stat.ctimeMs });
  }
  return litter.sort((a, b) => a.name.localeCompare(b.name));
}

/** Removes the node's litter hidden at least `olderThanMs` before `now`; returns the names removed. */
export async function removeLitter(layout: NodeLayout, olderThanMs: number, now: number): Promise<string[]> {
  const removed: string[] = [];
  for (const item of await listLitter(layout)) {
    if (!isOldLitter(item, olderThanMs, now)) continue;
    if (await unlinkIfPresent(path.join(layout.images, item.name)).catch(() => false))
      removed.push(item.name);
  }
  return removed;
}

/** Whether a name in an images folder is a hidden file of a network file system (never an image id). */
export function isLitterName(name: string): boolean {
  return LITTER_PREFIXES.some((prefix) => name.startsWith(prefix));
}

/** Whether litter was hidden long enough ago that the file it was is no longer open (see removeLitter). */
export function isOldLitter(item: Pick<Litter, 'changedMs'>, olderThanMs: number, now: number): boolean {
  return now - item.changedMs >= olderThanMs;
}
