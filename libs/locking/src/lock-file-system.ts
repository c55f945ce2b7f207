import { promises as fsp } from 'node:fs';
import type { BigIntStats } from 'node:fs';

/**
 * The file-system calls the lock protocol decides ownership with. A seam, so that tests can delay or
 * fail one step of one process (a descheduled claimant, a stale listing) instead of hoping for a race.
 * The heartbeat's own refreshes go through proper-lockfile and are not part of it.
 */
export interface LockFileSystem {
  readdir(dir: string): Promise<string[]>;
  mkdir(dir: string, options?: { recursive?: boolean }): Promise<unknown>;
  stat(target: string): Promise<BigIntStats>;
  rm(target: string, options: { recursive: true; force: true }): Promise<void>;
  /** Moves a retired key folder away in one step (key-retirement.ts). */
  rename(from: string, to: string): Promise<void>;
}

export const nodeLockFileSystem: LockFileSystem = {
  readdir: (dir) => fsp.readdir(dir),
  mkdir: (dir, options) => fsp.mkdir(dir, options),
  stat: (target) => fsp.stat(target, { bigint: true }),
  rm: (target, options) => fsp.rm(target, options),
  rename: (from, to) => fsp.rename(from, to),
};

/**
 * What one `mkdir` of a lock name did. EEXIST is trusted only when the name is really there: on GlusterFS
 * two clients racing one mkdir over two bricks can both get EEXIST while the brick that had it rolled it
 * back ('phantom'). A phantom is neither a win (we did not create the name) nor someone else's win (nobody
 * did): the caller tries again. A mkdir that succeeded did create the name (only a failed one is rolled
 * back). 'no-parent': ENOENT, the folder it goes in is missing, or not shown yet.
 */
export type MkdirOutcome = 'made' | 'exists' | 'phantom' | 'no-parent';

export async function mkdirOutcome(fs: LockFileSystem, dir: string): Promise<MkdirOutcome> {
  try {
    await fs.mkdir(dir);
    return 'made';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'no-parent';
    if (code !== 'EEXIST') throw error;
  }
  return (await pathExists(fs, dir)) ? 'exists' : 'phantom';
}

export async function pathExists(fs: LockFileSystem, target: string): Promise<boolean> {
  try {
    await fs.stat(target);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}
