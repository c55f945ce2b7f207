import * as path from 'node:path';
import type { FsClockReading } from './fs-clock';
import { lockLostError } from './held-lock';
import { EPOCH_NAME } from './key-directory';
import {
  type LockFileSystem,
  isGone,
  mkdirOutcome,
  openForSync,
  pathExists,
  syncFolder,
} from './lock-file-system';
import type { LockKey } from './lock-key';

/*
 * A new key folder and a new epoch are seen by the other clients at once (syncFolder): on CephFS a look
 * into a folder whose mkdir is not yet journaled, ours next included, waits at the MDS up to its 5 s tick.
 * The folder they are made in is opened before the mkdir and fsynced through that handle after it: an
 * open of the new folder by path would look it up, and that look up waits at the MDS for the very mkdir
 * the fsync is to flush (seen: 4.9 s for the epoch of a folder made again after a removal by hand).
 */

/**
 * `<node>/locks/<imageId>/`, below an existing node folder only when `requireNodeFolder` is set. False
 * when a step failed in a way a new look may mend: ENOENT under a node folder that exists (GlusterFS: a
 * parent another brick does not show yet, or a phantom EEXIST of `locks/` that left nothing). A folder
 * that is there already tells `clock` its mtime, which the file system stamped (fs-clock.ts).
 */
export async function makeKeyFolder(
  fs: LockFileSystem,
  key: LockKey,
  dir: string,
  requireNodeFolder: boolean,
  clock?: FsClockReading,
): Promise<boolean> {
  // Usually it is there: one look, and no handle opened for nothing.
  if (await existsStamped(fs, dir, clock)) return true;
  const locks = await openForSync(fs, path.dirname(dir)); // usually there already
  try {
    const first = await makeFolders(fs, key, dir, requireNodeFolder);
    if (first === false) return false;
    // Only the key folder made: through `locks/`. `locks/` made too (a node's first key): by path.
    if (first === dir) await locks.sync();
    else if (first !== undefined) await syncFolder(fs, dir);
    return true;
  } finally {
    await locks.close();
  }
}

async function existsStamped(fs: LockFileSystem, dir: string, clock?: FsClockReading): Promise<boolean> {
  try {
    const { mtimeNs } = await fs.stat(dir);
    clock?.saw(mtimeNs);
    return true;
  } catch (error) {
    if (isGone(error)) return false;
    throw error;
  }
}

/** The first folder made (undefined: none), or false for a step a new look may mend (makeKeyFolder). */
async function makeFolders(
  fs: LockFileSystem,
  key: LockKey,
  dir: string,
  requireNodeFolder: boolean,
): Promise<string | undefined | false> {
  if (!requireNodeFolder) {
    try {
      // Node's recursive mkdir answers the first folder it made, if any.
      const first = await fs.mkdir(dir, { recursive: true });
      return typeof first === 'string' ? first : undefined;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }
  let first: string | undefined;
  for (const folder of [path.dirname(dir), dir]) {
    try {
      await fs.mkdir(folder);
      first ??= folder;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      if (code !== 'ENOENT') throw error;
      const nodeDir = path.dirname(path.dirname(dir));
      if (await pathExists(fs, nodeDir)) return false;
      throw lockLostError(
        key,
        `node folder ${nodeDir} does not exist (node not registered, or the shared folder not mounted): nothing was created`,
      );
    }
  }
  return first;
}

/**
 * Starts a life of the key folder (first use, or after it was removed by hand); EEXIST: another did.
 * False when a mkdir came back ENOENT or a phantom EEXIST: the caller looks again after a poll.
 */
export async function startKeyEpoch(
  fs: LockFileSystem,
  key: LockKey,
  dir: string,
  requireNodeFolder: boolean,
): Promise<boolean> {
  if (!(await makeKeyFolder(fs, key, dir, requireNodeFolder))) return false;
  const folder = await openForSync(fs, dir);
  try {
    const outcome = await mkdirOutcome(fs, path.join(dir, EPOCH_NAME));
    if (outcome === 'made') await folder.sync(); // the other first users see it at once
    return outcome === 'made' || outcome === 'exists';
  } finally {
    await folder.close();
  }
}
