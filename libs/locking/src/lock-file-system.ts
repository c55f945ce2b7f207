import { promises as fsp } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { isStaleHandle } from '@app/contracts';

/**
 * The file-system calls the lock protocol decides ownership with. A seam, so that tests can delay or
 * fail one step of one process (a descheduled claimant, a stale listing) instead of hoping for a race.
 * The heartbeat's own refreshes go through proper-lockfile and are not part of it.
 */
/** An open folder: its fsync, and its close. */
export interface FolderHandle {
  sync(): Promise<void>;
  close(): Promise<void>;
}

export interface LockFileSystem {
  readdir(dir: string): Promise<string[]>;
  mkdir(dir: string, options?: { recursive?: boolean }): Promise<unknown>;
  stat(target: string): Promise<BigIntStats>;
  rm(target: string, options: { recursive: true; force: true }): Promise<void>;
  /** Removes an empty folder (removeFolder); absent: `rm` does it. */
  rmdir?(target: string): Promise<void>;
  /** Moves a retired key folder away in one step (key-retirement.ts). */
  rename(from: string, to: string): Promise<void>;
  /**
   * Opens a folder to fsync it (see syncFolder): what makes a step stable and visible to other clients
   * at once. It decides nothing. Absent: nothing to do (a test's file system).
   */
  openFolder?(dir: string): Promise<FolderHandle>;
}

export const nodeLockFileSystem: LockFileSystem = {
  readdir: (dir) => fsp.readdir(dir),
  mkdir: (dir, options) => fsp.mkdir(dir, options),
  stat: (target) => fsp.stat(target, { bigint: true }),
  rm: (target, options) => fsp.rm(target, options),
  rmdir: (target) => fsp.rmdir(target),
  rename: (from, to) => fsp.rename(from, to),
  openFolder: (dir) => fsp.open(dir, 'r'),
};

/**
 * After a step, an fsync, so that other clients see the step at once. On CephFS the MDS answers a mkdir or
 * rmdir "unsafe" (applied, not yet journaled) and keeps the key folder's locks until its journal is
 * written, which it does on its own only at its next tick (`mds_tick_interval`, 5 s): other clients' looks
 * into the key folder waited until then, and a lock hand-off took up to 5 s. An fsync of a folder with an
 * unsafe request in it asks the MDS to flush its whole journal now and waits for it (ceph's
 * Client::_fsync: flush_mdlog_sync, then the unsafe requests). A claim fsyncs the entry it made; a release
 * fsyncs the key folder after each step, through a handle opened before the first (openForSync). It only
 * makes a step visible sooner and decides nothing, so a failure (ENOENT after a retirement, EIO) is
 * ignored: the step stands as it was, and is seen at the file system's own pace. Not on a local file
 * system (step-file-system.ts); figures in docs/deployment.md, "CephFS".
 */
export async function syncFolder(fs: LockFileSystem, dir: string): Promise<void> {
  const folder = await openForSync(fs, dir);
  await folder.sync();
  await folder.close();
}

/** An open folder for syncFolder's fsyncs; failures are ignored, as there. */
export interface SyncHandle {
  sync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Opens `dir` now, for fsyncs later (syncFolder): they then need no path lookup, which on CephFS waits at
 * the MDS while a removal in the key folder is not yet journaled (the very removal the fsync is to flush).
 */
export async function openForSync(fs: LockFileSystem, dir: string): Promise<SyncHandle> {
  let folder: FolderHandle | undefined;
  try {
    folder = await fs.openFolder?.(dir);
  } catch {
    // Visibility only (syncFolder).
  }
  return {
    async sync() {
      await folder?.sync().catch(() => undefined);
    },
    async close() {
      await folder?.close().catch(() => undefined);
      folder = undefined;
    },
  };
}

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
    if (isGone(error)) return 'no-parent';
    if (code !== 'EEXIST') throw error;
  }
  return (await pathExists(fs, dir)) ? 'exists' : 'phantom';
}

export async function pathExists(fs: LockFileSystem, target: string): Promise<boolean> {
  try {
    await fs.stat(target);
    return true;
  } catch (error) {
    if (isGone(error)) return false;
    throw error;
  }
}

/** A folder or entry that is gone: ENOENT, or ESTALE (another client removed it meanwhile). */
export function isGone(error: unknown): boolean {
  return (error as NodeJS.ErrnoException).code === 'ENOENT' || isStaleHandle(error);
}

/**
 * Removes a lock folder (a generation, its release marker): one rmdir when it is empty, as it usually is,
 * else `rm -r`. One call, one path lookup: on CephFS a second lookup waits at the MDS while the first
 * removal is not yet journaled (syncFolder).
 */
export async function removeFolder(fs: LockFileSystem, target: string): Promise<void> {
  if (fs.rmdir) {
    try {
      await fs.rmdir(target);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (isGone(error)) return;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
    }
  }
  await fs.rm(target, { recursive: true, force: true });
}

/**
 * `rm -r` of a lock folder one entry at a time, each removal fsynced before the next, through the folder
 * opened before it (openForSync): on CephFS a second removal in a folder waits at the MDS until the first
 * is journaled, up to its 5 s tick, and so does every look into the folder meanwhile (syncFolder). The
 * caller fsyncs the folder `target` was in. Without fsyncs (a local file system) it is one `rm -r`.
 */
export async function removeTree(fs: LockFileSystem, target: string): Promise<void> {
  if (!fs.openFolder) return fs.rm(target, { recursive: true, force: true });
  let names: string[];
  try {
    names = await fs.readdir(target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (isGone(error)) return;
    if (code === 'ENOTDIR') return fs.rm(target, { recursive: true, force: true }); // a stray file
    throw error;
  }
  const folder = await openForSync(fs, target);
  try {
    for (const name of names) {
      await removeTree(fs, path.join(target, name));
      await folder.sync();
    }
  } finally {
    await folder.close();
  }
  await removeFolder(fs, target);
}

/**
 * statfs types of local file systems (ext2/3/4, xfs, btrfs, tmpfs, ramfs, overlayfs, zfs): one client
 * only, so a step is seen by every process at once and syncFolder's fsyncs would cost without helping.
 */
const LOCAL_FILE_SYSTEMS = new Set([
  0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x858458f6, 0x794c7630, 0x2fc12fc1,
]);

/**
 * Whether steps under `root` are worth an fsync each (syncFolder): everywhere but on a local file system.
 * A root that cannot be asked (missing, not mounted yet) counts as shared: an fsync too many costs little.
 */
export async function stepsNeedSync(root: string): Promise<boolean> {
  try {
    return !LOCAL_FILE_SYSTEMS.has(Number((await fsp.statfs(root)).type));
  } catch {
    return true;
  }
}

/** `fs` without its fsyncs (syncFolder does nothing through it); every other call goes to `fs` itself. */
export function withoutFolderSync(fs: LockFileSystem): LockFileSystem {
  return {
    readdir: (dir) => fs.readdir(dir),
    mkdir: (dir, options) => fs.mkdir(dir, options),
    stat: (target) => fs.stat(target),
    rm: (target, options) => fs.rm(target, options),
    rename: (from, to) => fs.rename(from, to),
    ...(fs.rmdir && { rmdir: (target: string) => fs.rmdir!(target) }),
  };
}
