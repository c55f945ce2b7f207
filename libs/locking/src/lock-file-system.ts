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
