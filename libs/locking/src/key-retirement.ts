import * as path from 'node:path';
import type { HeldLock } from './held-lock';
import { type LockFileSystem, openForSync, removeTree } from './lock-file-system';
import { lockKeyDir, nodeLocksDir } from './lock-key';
import { probeClock } from './fs-clock';

/*
 * Retiring a key folder: removing `<node>/locks/<imageId>/` of a key nobody uses, so that background rounds
 * and listings grow with what is in use, not with every image a node ever held. It is the protocol's
 * "folder removed by hand", done carefully (docs/locking.md, "Idle key folders are retired"):
 *   - under the key's exclusive lock, after assertStillHeld(): no other holder, no live reader;
 *   - in one atomic step, a rename of the whole folder to a name no key can have (`~retired~...`, '~' is
 *     not allowed in ids, so no lock code and no listing of any release takes it for a key), then `rm -r`
 *     of that name at leisure: nobody ever sees a half-removed key folder;
 *   - only while the key's generation lies at least RETIRE_FLOOR_MARGIN_US below a time the file system
 *     stamped just now: the mtime of a clock probe made in the key folder (fs-clock.ts), not our
 *     heartbeat's, which proper-lockfile stamps from this process's clock (utimes). The next life of the
 *     folder starts with a new epoch whose mtime is its floor; it is made after that probe, so (with a file-system
 *     clock that does not step back by more than the margin, and whole-second mtimes) its floor exceeds
 *     every generation of the retired life, and a claim made from a listing of the retired life can only
 *     fall below that floor, or meet fresh claimants on the same name. A key too young for that is kept.
 */

/** Prefix of a retired key folder waiting for its `rm -r` (a crash can leave one; anyone may remove it). */
export const RETIRED_PREFIX = '~retired~';

/** 60 s of clock step or skew between file-system clients, in µs (generations count in µs of the floor). */
export const RETIRE_FLOOR_MARGIN_US = 60_000_000;

export type RetireOutcome = 'retired' | 'too-young';

/**
 * Removes the key folder of `lock` (held exclusively) and ends the lock. 'too-young': the floor rule above
 * forbids it now; the lock is left held, for the caller to release.
 */
export async function retireKeyFolder(
  root: string,
  lock: HeldLock,
  fs: LockFileSystem,
  marginUs = RETIRE_FLOOR_MARGIN_US,
): Promise<RetireOutcome> {
  if (lock.mode !== 'exclusive') throw new Error('a key folder is retired only under its exclusive lock');
  const dir = lockKeyDir(root, lock.key);
  // No fresh stamp (the folder gone under us, a phantom EEXIST on GlusterFS): keep the key, as too young.
  const stampNs = await probeClock(fs, dir, lock.holder);
  if (stampNs === undefined || Number(stampNs / 1000n) < lock.fencingToken + marginUs) return 'too-young';
  const away = path.join(
    nodeLocksDir(root, lock.key.node),
    `${RETIRED_PREFIX}${lock.key.imageId}~${lock.holder.attemptId}`,
  );
  // `locks/` opened before the rename, fsynced right after it (syncFolder): on CephFS every look up of a
  // key in `locks/` waits at the MDS while the rename is not journaled, the heartbeat's own stop included.
  const locks = await openForSync(fs, path.dirname(dir));
  try {
    await lock.endWith(async () => {
      await fs.rename(dir, away);
      await locks.sync();
    });
  } finally {
    await locks.close();
  }
  await removeRetired(away, fs);
  return 'retired';
}

/**
 * `rm -r` of a retired key folder; harmless at any time (nothing refers to it any more). One entry at a
 * time, each fsynced, and `locks/` after it (removeTree): an unjournaled removal there holds up every
 * look up of a key in `locks/` on CephFS.
 */
export async function removeRetired(dir: string, fs: LockFileSystem): Promise<void> {
  const locks = await openForSync(fs, path.dirname(dir));
  try {
    await removeTree(fs, dir);
    await locks.sync();
  } finally {
    await locks.close();
  }
}

export function isRetiredName(name: string): boolean {
  return name.startsWith(RETIRED_PREFIX);
}
