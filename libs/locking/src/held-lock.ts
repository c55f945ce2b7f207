import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ReasonError } from '@app/contracts';
import type { Heartbeat } from './heartbeat';
import {
  type LockFileSystem,
  type SyncHandle,
  mkdirOutcome,
  openForSync,
  pathExists,
  removeFolder,
} from './lock-file-system';
import { generationName, readKeyDirectory, releasedName } from './key-directory';
import type { LockHolder, LockKey, LockMode } from './lock-key';
import { lockKeyString } from './lock-key';

/** What a held lock needs from its kind (gate generation or reader entry) to prove it still holds. */
export interface LockClaim {
  readonly heartbeat: Heartbeat;
  /** Reads the shared folder: is this claim still the one that counts? */
  stillOnDisk(): Promise<boolean>;
  /** Gives the claim back; safe to call after a loss. */
  giveBack(): Promise<void>;
}

export function lockLostError(key: LockKey, reason: unknown): ReasonError {
  const why = reason instanceof Error ? reason.message : String(reason);
  return new ReasonError('LOCK_LOST', `lock on ${lockKeyString(key)} lost: ${why}`, { cause: reason });
}

/**
 * A lock this process holds. Its `signal` aborts (with a LOCK_LOST error) once the watchdog finds the lock
 * lost, so long work under it stops. The signal is not a guarantee: a holder resumed after a pause runs its
 * own pending timers and continuations before the watchdog, so `signal.aborted` can still be false after a
 * takeover. `assertStillHeld()` is the check right before every irreversible step (a rename, a meta write,
 * a delete).
 */
export class HeldLock {
  readonly acquiredAt = new Date();
  private readonly acquiredMono = performance.now();
  private readonly watchdog: NodeJS.Timeout;
  private released = false;

  constructor(
    readonly key: LockKey,
    readonly mode: LockMode,
    readonly holder: LockHolder,
    /** The gate generation this lock was taken under: increases with every exclusive hand-over. */
    readonly fencingToken: number,
    readonly waitedMs: number,
    readonly tookOverStale: boolean,
    private readonly claim: LockClaim,
    private readonly loss: AbortController,
    watchdogMs: number,
    private readonly onReleased: (lock: HeldLock) => void,
  ) {
    this.watchdog = setInterval(() => void this.watch(), watchdogMs);
    this.watchdog.unref();
  }

  get signal(): AbortSignal {
    return this.loss.signal;
  }

  get heldMs(): number {
    return performance.now() - this.acquiredMono;
  }

  get lost(): boolean {
    return this.loss.signal.aborted;
  }

  async isStillHeld(): Promise<boolean> {
    if (this.released || this.loss.signal.aborted) return false;
    const heartbeat = this.claim.heartbeat;
    heartbeat.checkContinuity();
    if (!heartbeat.isFresh()) {
      this.lose(heartbeat.lost ?? new Error('heartbeat not fresh'));
      return false;
    }
    let onDisk: boolean;
    try {
      onDisk = await this.claim.stillOnDisk();
    } catch (error) {
      onDisk = false; // cannot prove it: treat as lost
      this.lose(error);
    }
    if (!onDisk) this.lose(new Error('a newer holder or a removed lock entry was found'));
    // The disk read took time: the heartbeat must still be trusted after it.
    return onDisk && heartbeat.isFresh() && !this.loss.signal.aborted;
  }

  async assertStillHeld(): Promise<void> {
    if (!(await this.isStillHeld())) {
      throw this.loss.signal.reason instanceof ReasonError
        ? this.loss.signal.reason
        : lockLostError(this.key, 'no longer held');
    }
  }

  /** The heartbeat entry that proves this lock (its mtime is written by the file server's clock). */
  get heartbeatPath(): string {
    return this.claim.heartbeat.path;
  }

  /**
   * Ends the lock with `act` instead of a release: `act` (an irreversible step that removes the lock's own
   * entries, see key-retirement.ts) runs right after a passed assertStillHeld(), then the heartbeat stops
   * without a release marker. If `act` fails, the lock is released as usual.
   */
  async endWith(act: () => Promise<void>): Promise<void> {
    await this.assertStillHeld();
    try {
      await act();
    } catch (error) {
      await this.release();
      throw error;
    }
    this.released = true;
    clearInterval(this.watchdog);
    try {
      await this.claim.heartbeat.stop();
    } finally {
      this.onReleased(this);
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.watchdog);
    try {
      await this.claim.giveBack();
    } finally {
      this.onReleased(this);
    }
  }

  private async watch(): Promise<void> {
    if (this.released || this.loss.signal.aborted) return;
    try {
      await this.isStillHeld();
    } catch {
      // isStillHeld records its own failures as a loss; a timer must never throw.
    }
  }

  private lose(reason: unknown): void {
    if (!this.loss.signal.aborted) this.loss.abort(lockLostError(this.key, reason));
    // A lost lock stops beating at once, although release() may come much later.
    this.claim.heartbeat.giveUp(reason instanceof Error ? reason : new Error(String(reason)));
  }
}

/** A release marker is made again this often after a phantom EEXIST; then the stale time frees the gate. */
const MARKER_ATTEMPTS = 3;

/** The exclusive gate: generation `generation` of the key folder, held while it is the newest. */
export class GateClaim implements LockClaim {
  /** Generations below ours that the claim's re-check saw (tryClaim), removed when the gate is given back. */
  garbage: string[] = [];

  constructor(
    readonly dir: string,
    readonly generation: number,
    readonly heartbeat: Heartbeat,
    private readonly fs: LockFileSystem,
    private readonly onGarbageFailed: (error: Error) => void = () => undefined,
  ) {}

  async stillOnDisk(): Promise<boolean> {
    const state = await readKeyDirectory(this.dir, this.fs);
    if (state.newest !== this.generation || state.newestReleased) return false;
    // The generation folder could have been removed and re-made by hand: only our own entry counts.
    return pathExists(this.fs, this.heartbeat.path);
  }

  /** Trusted heartbeat, still the newest generation on disk, and still trusted after that read. */
  async stillHeld(): Promise<boolean> {
    return this.heartbeat.isFresh() && (await this.stillOnDisk()) && this.heartbeat.isFresh();
  }

  async giveBack(): Promise<void> {
    // The marker first: its creation wakes waiters at once; the heartbeat folder goes after. A phantom
    // EEXIST (GlusterFS) left no marker: make it again, or waiters wait out the stale time. Making it late
    // is as safe as the release itself; ENOENT: the key folder is gone, nothing left to mark.
    // Each step is fsynced through the key folder, opened before the first (syncFolder, openForSync): on
    // CephFS a removal or a marker not yet journaled holds up every look into the folder, ours too, and
    // a second removal in the folder waits at the MDS until the first is journaled.
    const folder = await openForSync(this.fs, this.dir);
    try {
      const marker = path.join(this.dir, releasedName(this.generation));
      for (let attempt = 0; attempt < MARKER_ATTEMPTS; attempt++)
        if ((await mkdirOutcome(this.fs, marker)) !== 'phantom') break;
      await folder.sync();
      const trusted = this.heartbeat.isFresh(); // before the heartbeat stops (collectGarbage)
      await this.heartbeat.stop();
      if (trusted) await this.collectGarbage(folder);
    } finally {
      await this.heartbeat.stop(); // (done above unless a step failed)
      await folder.close();
    }
  }

  /**
   * Removes generations below ours, when the gate is given back (tryClaim found them). Harmless even late
   * (names only grow, so none of them can count again), but a holder that no longer trusts its heartbeat
   * leaves them to the next one. One at a time, each fsynced (giveBack).
   */
  private async collectGarbage(folder: SyncHandle): Promise<void> {
    for (const name of this.garbage.splice(0)) {
      await removeFolder(this.fs, path.join(this.dir, name)).catch(this.onGarbageFailed);
      await folder.sync();
    }
  }

  get name(): string {
    return generationName(this.generation);
  }
}

/** A shared holder's entry in the key folder; it counts while it exists and its heartbeat is fresh. */
export class ReaderClaim implements LockClaim {
  constructor(
    readonly heartbeat: Heartbeat,
    private readonly fs: LockFileSystem,
  ) {}

  stillOnDisk(): Promise<boolean> {
    return pathExists(this.fs, this.heartbeat.path);
  }

  async giveBack(): Promise<void> {
    // A writer draining readers sees the removal at once (syncFolder). The fsync is of the key folder (the
    // entry is gone), whose inode lock the kernel's FUSE client takes for it, and which another process of
    // this mount may hold for as long as its look into the folder waits at the MDS: it is not awaited.
    const folder = await openForSync(this.fs, path.dirname(this.heartbeat.path));
    try {
      await this.heartbeat.stop();
    } catch (error) {
      await folder.close();
      throw error;
    }
    void folder.sync().then(() => folder.close());
  }
}
