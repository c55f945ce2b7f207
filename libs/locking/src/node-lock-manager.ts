import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReasonError } from '@app/contracts';
import { Deadline } from './deadline';
import { DirectoryChangeWaiter } from './directory-change-waiter';
import { FsClockReading, clockPassed, clockRestMs } from './fs-clock';
import { GateClaim, HeldLock, type ReaderClaim, lockLostError } from './held-lock';
import { HeldLockSet } from './held-lock-set';
import { Heartbeat } from './heartbeat';
import { InProcessQueue } from './in-process-queue';
import { type RetireOutcome, retireKeyFolder } from './key-retirement';
import { lookAtGate } from './gate-look';
import { generationName, holderEntryName, readKeyDirectory } from './key-directory';
import { makeKeyFolder, startKeyEpoch } from './key-folder-creation';
import { MAX_READER_BATCH, type ReaderGrant, admitUnderGate } from './reader-batch';
import { drainReaders } from './reader-drain';
import {
  type LockFileSystem,
  isGone,
  mkdirOutcome,
  nodeLockFileSystem,
  syncFolder,
} from './lock-file-system';
import type { AcquireOptions, LockEvent, LockRequest, NodeLockManagerOptions } from './lock-manager-options';
import type { LockHolder, LockKey, LockMode } from './lock-key';
import { lockKeyDir, lockKeyString, newAttemptId, validateHolder, validateLockKey } from './lock-key';
import { type LockTimings, resolveLockTimings } from './lock-timings';
import { PollBudget } from './poll-budget';
import { pollIntervalMs } from './poll-pacing';
import { StalenessObserver } from './staleness-observer';
import { StepFileSystem } from './step-file-system';

/** A claim just won, with what its HeldLock needs to know and to do on release. */
interface TrackedClaim {
  key: LockKey;
  mode: LockMode;
  holder: LockHolder;
  /** The gate generation the claim was made under. */
  fencingToken: number;
  /** performance.now() when the acquisition began: the lock's waitedMs. */
  started: number;
  tookOver: boolean;
  claim: GateClaim | ReaderClaim;
  loss: AbortController;
  /** Ends this process's local turn on the key (exclusive holders keep it until release). */
  leave?: () => void;
}

/**
 * Node-local locks on the shared folder, without any global lock. Exclusive holders own the newest
 * generation of a key's gate; shared holders register a heartbeat entry while holding the gate briefly,
 * and an exclusive holder keeps the gate while it waits for readers to leave, so new readers queue
 * behind a waiting writer and cannot starve it. The full argument is in the
 * docs/locking.md, "The protocol" and "Why at most one exclusive holder".
 */
export class NodeLockManager {
  readonly timings: LockTimings;
  /** Local turns per key; a shared waiter carries its holder, so that the head can admit it along. */
  private readonly queue = new InProcessQueue<ReaderGrant, LockHolder>();
  private readonly held = new Set<HeldLock>();
  /** Turns to poll key folders, shared by all this process's waits (poll-budget.ts). */
  private readonly polls = new PollBudget();
  private readonly stepFs: StepFileSystem;
  private readonly requireNodeFolder: boolean;

  constructor(private readonly options: NodeLockManagerOptions) {
    this.timings = resolveLockTimings(options.timings);
    this.stepFs = new StepFileSystem(options.fs ?? nodeLockFileSystem, options.root, options.syncSteps);
    this.requireNodeFolder = options.requireNodeFolder ?? false;
    if (
      options.readerBatch !== undefined &&
      !(Number.isInteger(options.readerBatch) && options.readerBatch >= 1)
    )
      throw new Error(`readerBatch must be a whole number of at least 1, not ${options.readerBatch}`);
    validateHolder({ conductorId: options.conductorId, attemptId: 'x' });
  }

  get conductorId(): string {
    return this.options.conductorId;
  }

  get root(): string {
    return this.options.root;
  }

  /** Locks this process holds now (for the admin endpoint and for shutdown). */
  heldLocks(): HeldLock[] {
    return [...this.held];
  }

  /** How many local waiters queue behind the head waiter of a key. */
  localWaiters(key: LockKey): number {
    return this.queue.waiting(lockKeyString(key));
  }

  async acquire(request: LockRequest, options: AcquireOptions): Promise<HeldLock> {
    const set = await this.acquireAll([request], options);
    return set.locks[0]!;
  }

  /** Takes every lock in one global key order (so two callers can never wait on each other in a cycle). */
  async acquireAll(requests: LockRequest[], options: AcquireOptions): Promise<HeldLockSet> {
    const ordered = requests
      .map((r) => ({ ...validateLockKey(r), mode: r.mode }))
      .sort((a, b) => (lockKeyString(a) < lockKeyString(b) ? -1 : 1));
    for (let i = 1; i < ordered.length; i++) {
      if (lockKeyString(ordered[i]!) === lockKeyString(ordered[i - 1]!))
        throw new ReasonError('INVALID_REQUEST', `lock ${lockKeyString(ordered[i]!)} requested twice`);
    }
    const holder = validateHolder({
      conductorId: this.options.conductorId,
      attemptId: options.attemptId ?? newAttemptId(),
    });
    if (options.observer && options.observer.staleMs < this.timings.staleMs)
      throw new ReasonError(
        'INVALID_REQUEST',
        `an observer of less than the stale time (${this.timings.staleMs} ms)`,
      );
    this.stepFs.refresh();
    const deadline = new Deadline(options.timeoutMs, options.signal, ordered);
    const taken: HeldLock[] = [];
    try {
      for (const request of ordered)
        taken.push(await this.acquireOne(request, holder, deadline, options.observer));
      return new HeldLockSet(taken);
    } catch (error) {
      await Promise.allSettled(taken.map((l) => l.release()));
      throw error;
    } finally {
      deadline.dispose();
    }
  }

  /**
   * Takes `key` exclusively, runs `underLock` (false: keep the folder), and retires the key folder
   * (key-retirement.ts): removed at once, the lock ended with it. 'too-young': the floor rule kept it.
   */
  async retireKey(
    key: LockKey,
    options: AcquireOptions & {
      underLock?: (lock: HeldLock) => Promise<boolean>;
      /** The floor rule's margin (key-retirement.ts); only tests on one local disk lower it. */
      floorMarginUs?: number;
    },
  ): Promise<RetireOutcome | 'kept'> {
    const lock = await this.acquire({ ...key, mode: 'exclusive' }, options);
    try {
      if (options.underLock && !(await options.underLock(lock))) return 'kept';
      return await retireKeyFolder(this.options.root, lock, this.fs, options.floorMarginUs);
    } finally {
      await lock.release(); // nothing left to do after a retirement
    }
  }

  /** Releases everything this process holds (shutdown). */
  async releaseAll(): Promise<void> {
    await Promise.allSettled([...this.held].map((l) => l.release()));
  }

  /** The file system the steps go through (with or without fsyncs, step-file-system.ts). */
  private get fs(): LockFileSystem {
    return this.stepFs.current;
  }

  private async acquireOne(
    request: LockRequest,
    holder: LockHolder,
    deadline: Deadline,
    // The caller's watching (AcquireOptions.observer), else the acquisition's own from scratch.
    watched = new StalenessObserver(this.timings.staleMs, this.fs),
  ): Promise<HeldLock> {
    const key: LockKey = { node: request.node, imageId: request.imageId };
    const dir = lockKeyDir(this.options.root, key);
    const started = performance.now();
    let leave: (() => void) | undefined;
    try {
      deadline.waitingAt(key, 'turn in this process');
      const turn = await this.queue.enter(
        lockKeyString(key),
        deadline,
        request.mode === 'shared' ? holder : undefined,
      );
      if (turn.grant) return this.admitted(key, holder, started, turn.grant, deadline);
      leave = turn.leave;
      deadline.waitingAt(key, 'gate');
      const { gate, tookOver, loss } = await this.claimGate(key, dir, holder, deadline, watched);
      const claimed = { key, holder, fencingToken: gate.generation, started, tookOver };
      let lock: HeldLock;
      if (request.mode === 'exclusive') {
        try {
          deadline.waitingAt(key, 'readers to leave');
          await drainReaders({
            key,
            dir,
            deadline,
            gate,
            lost: loss.signal,
            observer: watched,
            fs: this.fs,
            watch: this.stepFs.watchable,
            timings: this.timings,
            polls: this.polls,
            emit: (event) => this.emit(event),
          });
        } catch (error) {
          await gate.giveBack();
          throw error;
        }
        const leaveOnRelease = leave;
        leave = undefined; // the local turn is kept until release
        lock = this.track({ ...claimed, mode: 'exclusive', claim: gate, loss, leave: leaveOnRelease });
      } else {
        lock = await this.admitReaders(claimed, dir, gate, loss.signal);
      }
      this.emit({
        type: 'acquired',
        key,
        mode: request.mode,
        waitedMs: lock.waitedMs,
        tookOverStale: tookOver,
      });
      return lock;
    } catch (error) {
      if (error instanceof ReasonError && error.code === 'LOCK_TIMEOUT')
        this.emit({ type: 'timed-out', key, mode: request.mode, waitedMs: performance.now() - started });
      throw error;
    } finally {
      leave?.();
    }
  }

  private track(claimed: TrackedClaim): HeldLock {
    const { key, mode, loss, leave } = claimed;
    const lock = new HeldLock(
      key,
      mode,
      claimed.holder,
      claimed.fencingToken,
      performance.now() - claimed.started,
      claimed.tookOver,
      claimed.claim,
      loss,
      this.timings.updateMs,
      (released) => {
        this.held.delete(released);
        leave?.();
        this.emit({ type: 'released', key, mode, heldMs: released.heldMs });
      },
    );
    loss.signal.addEventListener(
      'abort',
      () => {
        const reason =
          loss.signal.reason instanceof Error ? loss.signal.reason.message : String(loss.signal.reason);
        this.emit({ type: 'lost', key, mode, reason });
      },
      { once: true },
    );
    this.held.add(lock);
    return lock;
  }

  /** Waits until the gate is free or stale, then claims the next generation; exactly one claimant wins it. */
  private async claimGate(
    key: LockKey,
    dir: string,
    holder: LockHolder,
    deadline: Deadline,
    observer: StalenessObserver,
  ) {
    const clock = new FsClockReading(); // what this acquisition saw of the file system's clock (fs-clock.ts)
    await makeKeyFolder(this.fs, key, dir, this.requireNodeFolder, clock); // when it could not, the loop below tries again (startKeyEpoch)
    const waiter = new DirectoryChangeWaiter(dir, this.stepFs.watchable);
    let lastPollMs = 0;
    let clockTries = 0;
    // The rest before the next look grows with how long the last one took (poll-pacing.ts).
    const rest = (atMostMs = Infinity) =>
      waiter.wait(Math.min(pollIntervalMs(this.timings, lastPollMs), atMostMs), deadline.signal);
    try {
      for (;;) {
        deadline.throwIfOver();
        // Only the look takes a turn of the poll budget: the steps it leads to never wait for one.
        const { result: look, ms } = await this.polls.run(deadline.signal, () =>
          lookAtGate(dir, this.fs, observer),
        );
        lastPollMs = ms;
        if (look.next === 'start-epoch') {
          // A mkdir that a quirk undid is tried again after a poll, not in a tight loop.
          if (!(await startKeyEpoch(this.fs, key, dir, this.requireNodeFolder))) await rest();
          continue;
        }
        if (look.next === 'wait') {
          await rest(observer.remainingMs(look.beat) + 1);
          continue;
        }
        // No generation is made before the file system's clock is past it, or a later life of the folder
        // could start at or below it (fs-clock.ts). A plain timer: our own probe would wake the watch.
        if (!(await clockPassed(this.fs, dir, holder, clock, look.generation))) {
          const ms = clockRestMs(clockTries++, pollIntervalMs(this.timings, lastPollMs));
          await sleep(ms, undefined, { signal: deadline.signal }).catch(() => undefined);
          continue;
        }
        const claimed = await this.tryClaim(key, dir, look.generation, holder);
        if (claimed === 'phantom') await rest();
        else if (claimed) return { ...claimed, tookOver: look.tookOver };
        // Lost the race for that generation (or a phantom, see tryClaim): look again.
      }
    } finally {
      waiter.close();
    }
  }

  private async tryClaim(key: LockKey, dir: string, generation: number, holder: LockHolder) {
    const genDir = path.join(dir, generationName(generation));
    const claimedAt = performance.now();
    // The atomic step: one process creates this name. EEXIST: another claimant won it; ENOENT: the key
    // folder was removed by hand; both: look again. A phantom (EEXIST, nothing there) is no one's win:
    // the next look decides from a new listing, after a poll.
    const outcome = await mkdirOutcome(this.fs, genDir);
    if (outcome === 'phantom') return 'phantom';
    if (outcome !== 'made') return undefined;
    const loss = new AbortController();
    const heartbeat = new Heartbeat(path.join(genDir, holderEntryName(holder)), this.timings, (reason) => {
      if (!loss.signal.aborted) loss.abort(lockLostError(key, reason));
    });
    try {
      await heartbeat.start(claimedAt);
    } catch (error) {
      if (isGone(error)) return undefined; // collected by a newer claimant
      throw error;
    }
    return heartbeat.stopIfThrows(async () => {
      // The claim and its entry, seen by other clients at once (syncFolder): the entry is the folder made last.
      await syncFolder(this.fs, heartbeat.path);
      const gate = new GateClaim(dir, generation, heartbeat, this.fs, (error) =>
        this.emit({ type: 'garbage-failed', key, error: error.message }),
      );
      // A claimant working from an old listing can re-create a generation that was already collected, or
      // one below the floor of a re-made folder; only the newest generation at or above the floor counts,
      // so check again now that ours exists.
      // And a claimant paused since its mkdir for longer than it may trust itself may have been taken over
      // already, by a waiter whose own mkdir has not landed yet: it gives the claim up.
      const state = await readKeyDirectory(dir, this.fs);
      if (state.newest !== generation || state.newestReleased || !heartbeat.isFresh()) {
        await heartbeat.stop();
        return undefined;
      }
      gate.garbage = state.superseded; // removed when the gate is given back (GateClaim.collectGarbage)
      return { gate, loss };
    });
  }

  /** Under the gate: the head's reader entry and its followers' (reader-batch.ts); answers the followers. */
  private async admitReaders(
    claimed: Omit<TrackedClaim, 'mode' | 'claim' | 'loss'>,
    dir: string,
    gate: GateClaim,
    gateLost: AbortSignal,
  ): Promise<HeldLock> {
    const batch = this.options.readerBatch ?? MAX_READER_BATCH;
    const followers = this.queue.takeSharedFollowers(lockKeyString(claimed.key), batch - 1);
    const holders = [claimed.holder, ...followers.map((f) => f.tag)];
    const [own, ...theirs] = await admitUnderGate({
      key: claimed.key,
      dir,
      holders,
      gate,
      gateLost,
      fs: this.fs,
      timings: this.timings,
    });
    theirs.forEach((registration, i) =>
      followers[i]!.admit({ registration, fencingToken: claimed.fencingToken }),
    );
    if (!own!.ok) throw own!.error;
    return this.track({ ...claimed, mode: 'shared', claim: own!.claim, loss: own!.loss });
  }

  /** A shared waiter the head admitted along (admitReaders): its lock, or the head's failure for it. */
  private async admitted(
    key: LockKey,
    holder: LockHolder,
    started: number,
    grant: ReaderGrant,
    deadline: Deadline,
  ): Promise<HeldLock> {
    const { registration } = grant;
    if (!registration.ok) throw registration.error;
    const lock = this.track({
      key,
      holder,
      fencingToken: grant.fencingToken,
      started,
      tookOver: false,
      mode: 'shared',
      claim: registration.claim,
      loss: registration.loss,
    });
    // Its own deadline or its caller's abort may have ended while the head registered it.
    if (deadline.signal.aborted) {
      await lock.release().catch(() => undefined);
      throw deadline.signal.reason;
    }
    this.emit({ type: 'acquired', key, mode: 'shared', waitedMs: lock.waitedMs, tookOverStale: false });
    return lock;
  }

  private emit(event: LockEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      // A listener's failure must not break locking.
    }
  }
}
