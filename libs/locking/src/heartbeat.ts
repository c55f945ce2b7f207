import * as fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import * as lockfile from 'proper-lockfile';
import type { LockTimings } from './lock-timings';

interface BeatListener {
  onBeat(issuedAt: number): void;
  /** A lost heartbeat must not move again (see `giveUp`). */
  silenced(): boolean;
  /** A refresh call (proper-lockfile's `stat`, then `utimes`) was issued; the returned function marks its answer. */
  calling(call: RefreshCall): () => void;
}
type RefreshCall = 'stat' | 'utimes';
const beatListeners = new Map<string, BeatListener>();

/*
 * proper-lockfile refreshes a lock's mtime through `options.fs`. Wrapping utimes tells us when each
 * refresh was issued, on our monotonic clock: the continuity rule below needs that, and proper-lockfile
 * itself does not notice a holder that was paused past the stale time if nobody touched its folder.
 * It is also where a lost heartbeat is stopped: proper-lockfile has no "stop refreshing" short of
 * removing the folder, and it ends its refresh timer only on ENOENT, so a silenced refresh reports that.
 */
const observedFs = {
  ...fs,
  stat(target: fs.PathLike, callback: (error: NodeJS.ErrnoException | null, stats: fs.Stats) => void): void {
    const answered = beatListeners.get(String(target))?.calling('stat');
    fs.stat(target, (error, stats) => {
      answered?.();
      callback(error, stats);
    });
  },
  utimes(target: fs.PathLike, atime: fs.TimeLike, mtime: fs.TimeLike, callback: fs.NoParamCallback): void {
    const listener = beatListeners.get(String(target));
    if (listener?.silenced()) {
      const error = new Error(`heartbeat ${String(target)} stopped: its lock was lost`);
      callback(Object.assign(error, { code: 'ENOENT' }));
      return;
    }
    const issuedAt = performance.now();
    const answered = listener?.calling('utimes');
    fs.utimes(target, atime, mtime, (error) => {
      answered?.();
      if (!error) listener?.onBeat(issuedAt);
      callback(error);
    });
  },
};

/**
 * One holder's heartbeat: a proper-lockfile lock folder at a path no other process ever creates (it
 * carries the holder's attempt id), so proper-lockfile's racy stale takeover (upstream issue #121) never
 * comes into play. Others judge liveness by watching its mtime move.
 */
export class Heartbeat {
  private lastBeatAt = 0;
  private releaseLockfile?: () => Promise<void>;
  private lostReason?: Error;
  private stopped = false;
  /** The refresh call under way, and how long the last answered ones took: a loss says where time went. */
  private pending?: { call: RefreshCall; since: number };
  private readonly lastTook: Partial<Record<RefreshCall, number>> = {};

  constructor(
    readonly path: string,
    private readonly timings: LockTimings,
    private readonly onLost: (reason: Error) => void,
  ) {}

  /**
   * `since`: when the claim this heartbeat proves began (before the claim's own mkdir). Others watch that
   * claim from its mkdir on, so trust must count from then too: a claimant paused between its mkdir and
   * this start may already have been taken over, and must not wake up with a fresh-looking heartbeat.
   */
  async start(since = performance.now()): Promise<void> {
    // Conservative: the beat counts from before the folder exists.
    this.lastBeatAt = since;
    beatListeners.set(this.path, {
      onBeat: (issuedAt) => this.onBeat(issuedAt),
      silenced: () => this.lostReason !== undefined,
      calling: (call) => this.calling(call),
    });
    try {
      this.releaseLockfile = await lockfile.lock(this.path, {
        lockfilePath: this.path,
        realpath: false, // the folder does not exist yet; realpath would fail
        stale: this.timings.staleMs,
        update: this.timings.updateMs,
        retries: 0,
        fs: observedFs,
        // The default throws from a timer and kills the process; we abort the holder's work instead.
        onCompromised: (error) =>
          this.lose(new Error(`heartbeat ${this.path} compromised: ${error.message}`)),
      });
    } catch (error) {
      beatListeners.delete(this.path);
      throw error;
    }
  }

  /** Trusted only while the last beat is younger than staleMs - safetyMarginMs and no gap ever exceeded it. */
  isFresh(now = performance.now()): boolean {
    return !this.lostReason && !this.stopped && now - this.lastBeatAt < this.trustWindowMs();
  }

  /** Marks the heartbeat lost if it has gone quiet for longer than it may (a paused process, a stuck disk). */
  checkContinuity(now = performance.now()): void {
    if (this.stopped || this.lostReason) return;
    const quiet = now - this.lastBeatAt;
    if (quiet >= this.trustWindowMs()) {
      this.lose(new Error(`no heartbeat for ${Math.round(quiet)} ms (${this.describeRefresh(now)})`));
    }
  }

  /**
   * Where a late heartbeat's time went: a call the file system has not answered (a stalled mount, a
   * capability recall), or none under way (this process ran its timers late, or the last calls were slow).
   */
  describeRefresh(now = performance.now()): string {
    const took = (['stat', 'utimes'] as const)
      .filter((call) => this.lastTook[call] !== undefined)
      .map((call) => `${call} ${Math.round(this.lastTook[call]!)} ms`);
    const last = took.length > 0 ? `; the last answered: ${took.join(', ')}` : '';
    const pending = this.pending;
    return pending
      ? `its ${pending.call} unanswered for ${Math.round(now - pending.since)} ms${last}`
      : `no refresh call under way${last}`;
  }

  get lost(): Error | undefined {
    return this.lostReason;
  }

  /**
   * The lock this heartbeat proves is lost (its holder found out by a check): it never beats again, so
   * waiters see it frozen and take over after staleMs instead of waiting on a holder that only looks
   * alive. Its folder stays until `stop()`: removing it would look like a change to a waiter watching it.
   */
  giveUp(reason: Error): void {
    this.lose(reason);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    beatListeners.delete(this.path);
    const release = this.releaseLockfile;
    this.releaseLockfile = undefined;
    if (!release) return;
    try {
      await release();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ERELEASED' && code !== 'ENOTACQUIRED' && code !== 'ENOENT') throw error;
      // proper-lockfile let go of it after a loss or a compromise, and leaves the folder: the path is ours
      // alone (it carries our attempt id), so remove it, or a reader entry would hold writers up till stale.
      await fs.promises.rm(this.path, { recursive: true, force: true });
    }
  }

  /**
   * Runs `step`, the rest of an acquisition after this heartbeat started; if it throws, the heartbeat is
   * stopped (its entry removed) first. Every heartbeat belongs to a lock that is given back: one that beat
   * on with no lock behind it would keep its key in use for ever, and no writer or leftover sweep would
   * then remove it, nor a dead holder's entry beside it.
   */
  async stopIfThrows<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (error) {
      await this.stop().catch(() => undefined); // the step's error is the one to report
      throw error;
    }
  }

  private trustWindowMs(): number {
    return this.timings.staleMs - this.timings.safetyMarginMs;
  }

  private calling(call: RefreshCall): () => void {
    const since = performance.now();
    this.pending = { call, since };
    return () => {
      this.lastTook[call] = performance.now() - since;
      if (this.pending?.since === since) this.pending = undefined;
    };
  }

  private onBeat(issuedAt: number): void {
    const gap = issuedAt - this.lastBeatAt;
    // Once a gap this long happened, a waiter may already have seen us stale: the lock is gone for good,
    // even though this late refresh succeeded.
    if (gap >= this.trustWindowMs()) {
      this.lose(new Error(`heartbeat gap of ${Math.round(gap)} ms (${this.describeRefresh()})`));
    } else if (issuedAt > this.lastBeatAt) this.lastBeatAt = issuedAt;
  }

  private lose(reason: Error): void {
    if (this.lostReason || this.stopped) return;
    this.lostReason = reason;
    try {
      this.onLost(reason);
    } catch {
      // onLost only aborts a controller; never let it escape into a timer.
    }
  }
}
