import * as path from 'node:path';
import { lockLostError } from './held-lock';
import { EPOCH_NAME } from './key-directory';
import { type LockFileSystem, mkdirOutcome, pathExists, syncFolder } from './lock-file-system';
import type { LockKey } from './lock-key';

/**
 * `<node>/locks/<imageId>/`, below an existing node folder only when `requireNodeFolder` is set. False
 * when a step failed in a way a new look may mend: ENOENT under a node folder that exists (GlusterFS: a
 * parent another brick does not show yet, or a phantom EEXIST of `locks/` that left nothing).
 */
export async function makeKeyFolder(
  fs: LockFileSystem,
  key: LockKey,
  dir: string,
  requireNodeFolder: boolean,
): Promise<boolean> {
  if (!requireNodeFolder) {
    try {
      // The first folder it made, if any (Node's recursive mkdir): then the new folders are fsynced.
      if ((await fs.mkdir(dir, { recursive: true })) !== undefined) await syncFolder(fs, dir);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
  }
  let made = false;
  for (const folder of [path.dirname(dir), dir]) {
    try {
      await fs.mkdir(folder);
      made = true;
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
  // Seen by the other clients at once (syncFolder): on CephFS a look into a folder whose mkdir is not yet
  // journaled, ours next included, waits at the MDS up to its 5 s tick. The key folder's fsync asks the MDS
  // for its whole journal, `locks/` included.
  if (made) await syncFolder(fs, dir);
  return true;
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
  const epoch = path.join(dir, EPOCH_NAME);
  const outcome = await mkdirOutcome(fs, epoch);
  if (outcome === 'made') await syncFolder(fs, epoch); // the other first users see it at once
  return outcome === 'made' || outcome === 'exists';
}
