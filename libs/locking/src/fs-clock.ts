import * as path from 'node:path';
import type { LockFileSystem } from './lock-file-system';
import { isGone, openForSync, removeFolder } from './lock-file-system';
import type { LockHolder } from './lock-key';

/*
 * Generation numbers are microseconds of the file system's clock: a life of a key folder starts at the
 * floor F (its epoch's mtime) and each claim adds one. A later life is safe only if its epoch's mtime
 * exceeds every generation made in earlier lives (docs/locking.md; the model's floor assumption). The
 * file system stamps mtimes from a coarse clock (a jiffy, 4 ms here; whole seconds on sshfs and some NFS
 * servers), so a life that lasts less than one tick is followed by one with the same floor: the same
 * first generation, a second holder's heartbeat inside the first one's generation folder, a late release
 * marker on the new life's gate. Hence the rule: a claimant makes generation N only once it has seen the
 * file system stamp a time after N. Every later epoch is made after that stamp, so its floor is above N.
 * The rule only delays a claim's mkdir; what is claimed, and who wins, is decided as before.
 */

/** The coarsest tick of a file system's clock we know of: FAT's 2 s (whole seconds on sshfs, some NFS). */
export const CLOCK_TICK_BOUND_US = 2_000_000;

/** What one acquisition knows of the file system's clock: the newest mtime it saw the file system stamp. */
export class FsClockReading {
  private latestUs = -Infinity;

  /** An mtime the file system stamped itself (a folder's, from a change inside it; never a heartbeat's). */
  saw(mtimeNs: bigint): void {
    this.latestUs = Math.max(this.latestUs, microseconds(mtimeNs));
  }

  /** Whether the clock is known to be past `generation` (µs): then no later epoch can be at or below it. */
  isPast(generation: number): boolean {
    return this.latestUs > generation;
  }
}

export type ClockVerdict = 'past' | 'wait' | 'not-a-tick';

/**
 * What a fresh stamp `stampUs` of the file system's clock says about making `generation` now. A
 * generation more than a tick ahead of the clock is no coarse tick: its floor came from a clock ahead of
 * this one (another client's on file systems whose clients stamp mtimes, a clock stepped back, a touch of
 * the epoch). Waiting would not help soon, so the claim goes on as before the rule: the documented limit
 * of the floor (docs/locking.md), like the retirement's margin.
 */
export function clockVerdict(generation: number, stampUs: number): ClockVerdict {
  if (stampUs > generation) return 'past';
  return generation - stampUs >= CLOCK_TICK_BOUND_US ? 'not-a-tick' : 'wait';
}

/** The claimant's clock probe in the key folder: no lock entry of any release, listings ignore it. */
export function clockProbeName(holder: LockHolder): string {
  return `c~${holder.conductorId}~${holder.attemptId}`;
}

/**
 * Whether generation `generation` may be made now: the clock is known past it, or a fresh stamp says so
 * (clockVerdict). False: look again after `clockRestMs`.
 */
export async function clockPassed(
  fs: LockFileSystem,
  dir: string,
  holder: LockHolder,
  clock: FsClockReading,
  generation: number,
): Promise<boolean> {
  if (clock.isPast(generation)) return true;
  const stampNs = await probeClock(fs, dir, holder);
  if (stampNs === undefined) return false;
  clock.saw(stampNs);
  return clockVerdict(generation, microseconds(stampNs)) !== 'wait';
}

/**
 * A fresh stamp of the file system's clock (ns): the mtime of the claimant's own probe, made in the key
 * folder `dir` and removed at once, each step fsynced as a claim's are (syncFolder). Undefined when no
 * mkdir of ours made it: the key folder is gone, or the name was there (a probe of ours left behind, or
 * a phantom EEXIST on GlusterFS), whose mtime is no fresh stamp.
 */
export async function probeClock(
  fs: LockFileSystem,
  dir: string,
  holder: LockHolder,
): Promise<bigint | undefined> {
  const probe = path.join(dir, clockProbeName(holder));
  const folder = await openForSync(fs, dir);
  try {
    let made = true;
    try {
      await fs.mkdir(probe);
    } catch (error) {
      if (isGone(error)) return undefined;
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      made = false;
    }
    try {
      if (!made) return undefined;
      await folder.sync();
      return (await fs.stat(probe)).mtimeNs;
    } catch (error) {
      if (isGone(error)) return undefined;
      throw error;
    } finally {
      await removeFolder(fs, probe);
      await folder.sync();
    }
  } finally {
    await folder.close();
  }
}

/**
 * The rest before the next look while the clock has not passed a generation: 1 ms, doubling, at most
 * `restMs` (the wait's poll pacing): a jiffy costs a few ms, a whole second a handful of probes.
 */
export function clockRestMs(tries: number, restMs: number): number {
  return Math.min(restMs, 2 ** Math.min(tries, 30));
}

function microseconds(mtimeNs: bigint): number {
  return Number(mtimeNs / 1000n);
}
