import type { Logger } from '@app/contracts';
import { performance } from 'node:perf_hooks';
import type { CacheEntries } from '@app/image-store';
import {
  type NodeLockManager,
  StalenessObserver,
  inspectLocks,
  lockEntryPath,
  lockKeyString,
  newAttemptId,
} from '@app/locking';
import { RoundSchedule } from './round-schedule';

export interface LeftoverSweepOptions {
  /** LEFTOVER_SWEEP_MS: from the end of one round to the start of the next; 0 turns the sweep off. */
  intervalMs: number;
  /** CACHE_ROOT. */
  root: string;
  /** The nodes of the cell. */
  listNodes: () => Promise<string[]>;
  log: Pick<Logger, 'info' | 'warn' | 'debug'>;
  /**
   * RESUMABLE_KEEP_MS: a dead attempt's partial copy that can be resumed (its record verified some bytes)
   * is left this long unchanged for a later attempt to continue, instead of LOCK_STALE_MS. 0: no longer.
   */
  resumableKeepMs?: number;
}

export interface SweepRound {
  nodes: number;
  /** Keys whose leftovers were collected under their exclusive lock. */
  keysCollected: number;
  /** Stale lock entries (an unreleased gate, reader entries) among them. */
  lockEntries: number;
  /** Partial files (copies, meta files) removed. */
  tmpFiles: number;
  /** Keys skipped because someone was using them (a live entry, or the lock wait ran out). */
  busy: number;
  failed: number;
  durationMs: number;
}

/** The sweep as GET /status shows it. */
export interface LeftoverSweepView {
  enabled: boolean;
  intervalMs: number;
  rounds: number;
  running: boolean;
  nextRoundAt: string | null;
  /** Since the conductor started. */
  totals: { keysCollected: number; lockEntries: number; tmpFiles: number; busy: number };
  lastRound: (SweepRound & { endedAt: string }) | null;
}

/**
 * Collects what dead attempts leave behind when no later writer comes for the same image: the lock entries
 * of a conductor killed right after it published (its redelivered request is answered already-present
 * without the lock), and partial files such as a killed source-side meta refresh's `tmp/<id>~meta-*.part`.
 * Nothing is removed from a listing alone: a key whose lock entries, or whose partial files, kept the same
 * identity and mtime for LOCK_STALE_MS of this sweep's own watching (its monotonic clock), is taken
 * with its exclusive lock like any writer (a stale gate is taken over and stale reader entries drained by
 * the lock's own rules), its partial files are removed under that lock, and the lock is released. A
 * resumable partial (its record verified some bytes) counts only after RESUMABLE_KEEP_MS unchanged.
 */
export class LeftoverSweep {
  private readonly schedule: RoundSchedule<SweepRound>;
  private readonly observer: StalenessObserver;
  /** Watches resumable partials, which count as leftovers only after RESUMABLE_KEEP_MS. */
  private readonly keepObserver: StalenessObserver | undefined;
  /** Heartbeats and partial files watched, per node, so the observer forgets the ones that went away. */
  private readonly watched = new Map<string, Set<string>>();
  private lastRound: LeftoverSweepView['lastRound'] = null;
  private readonly totals = { keysCollected: 0, lockEntries: 0, tmpFiles: 0, busy: 0 };

  constructor(
    private readonly store: Pick<CacheEntries, 'listTmp' | 'removeLeftoverTmp' | 'resumablePartials'>,
    private readonly locks: NodeLockManager,
    private readonly options: LeftoverSweepOptions,
  ) {
    this.schedule = new RoundSchedule((signal) => this.round(signal), options.intervalMs);
    this.observer = new StalenessObserver(locks.timings.staleMs);
    const keepMs = options.resumableKeepMs ?? 0;
    this.keepObserver = keepMs > locks.timings.staleMs ? new StalenessObserver(keepMs) : undefined;
  }

  get enabled(): boolean {
    return this.options.intervalMs > 0;
  }

  view(): LeftoverSweepView {
    return {
      enabled: this.enabled,
      intervalMs: this.options.intervalMs,
      rounds: this.schedule.rounds,
      running: this.schedule.running,
      nextRoundAt: this.schedule.nextRoundAt,
      totals: { ...this.totals },
      lastRound: this.lastRound && { ...this.lastRound },
    };
  }

  start(): void {
    if (!this.enabled) return;
    if (this.schedule.start())
      this.options.log.info({ intervalMs: this.options.intervalMs }, 'leftover sweep scheduled');
  }

  /** One round now (or the one running). Never throws. */
  runOnce(): Promise<SweepRound> {
    return this.schedule.runOnce();
  }

  stop(): Promise<void> {
    return this.schedule.stop();
  }

  private async round(signal: AbortSignal): Promise<SweepRound> {
    const started = performance.now();
    const round: SweepRound = {
      nodes: 0,
      keysCollected: 0,
      lockEntries: 0,
      tmpFiles: 0,
      busy: 0,
      failed: 0,
      durationMs: 0,
    };
    let nodes: string[] = [];
    try {
      nodes = await this.options.listNodes();
    } catch (error) {
      this.options.log.warn({ err: errorText(error) }, 'leftover sweep: could not list the nodes');
    }
    for (const node of nodes) {
      if (signal.aborted) break;
      try {
        await this.sweepNode(node, round, signal);
        round.nodes += 1;
      } catch (error) {
        round.failed += 1;
        this.options.log.warn({ node, err: errorText(error) }, 'leftover sweep: a node failed');
      }
    }
    round.durationMs = Math.round(performance.now() - started);
    for (const k of ['keysCollected', 'lockEntries', 'tmpFiles', 'busy'] as const) this.totals[k] += round[k];
    this.lastRound = { ...round, endedAt: new Date().toISOString() };
    const worthTelling = round.keysCollected > 0 || round.failed > 0;
    (worthTelling ? this.options.log.info : this.options.log.debug)?.call(
      this.options.log,
      round,
      'leftover sweep round done',
    );
    return round;
  }

  private async sweepNode(node: string, round: SweepRound, signal: AbortSignal): Promise<void> {
    const staleMs = this.locks.timings.staleMs;
    const watched = new Set<string>();
    // Keys with lock entries: candidates only when this sweep watched every one of them unchanged for the
    // stale time on its own clock (never by comparing mtimes with this host's wall clock); a live one
    // means the key is in use.
    const entriesByKey = new Map<string, { stale: number; live: number }>();
    for (const entry of (await inspectLocks(this.options.root, { node, staleMs })).entries) {
      const heartbeat = lockEntryPath(this.options.root, entry);
      watched.add(heartbeat);
      const seen = entriesByKey.get(entry.imageId) ?? { stale: 0, live: 0 };
      seen[(await this.observer.isStale(heartbeat)) ? 'stale' : 'live'] += 1;
      entriesByKey.set(entry.imageId, seen);
    }
    const candidates = new Map<string, number>(); // imageId -> stale lock entries
    for (const [imageId, { stale, live }] of entriesByKey) if (live === 0) candidates.set(imageId, stale);
    // Partial files: candidates once watched unchanged for the stale time, unless their key is in use. A
    // resumable one (a killed copy's bytes, checkpointed) waits longer: its request is usually redelivered
    // and continues it, and the sweep may win the race for the dead holder's lock.
    const resumable = this.keepObserver
      ? new Set(await this.store.resumablePartials(node))
      : new Set<string>();
    const kept = new Set<string>();
    for (const tmp of await this.store.listTmp(node)) {
      watched.add(tmp.path);
      if (entriesByKey.get(tmp.imageId)?.live) continue;
      if (resumable.has(tmp.path) && !(await this.keepObserver!.isStale(tmp.path))) {
        kept.add(tmp.path);
        continue;
      }
      if (await this.observer.isStale(tmp.path))
        candidates.set(tmp.imageId, candidates.get(tmp.imageId) ?? 0);
    }
    for (const gone of this.watched.get(node) ?? [])
      if (!watched.has(gone)) {
        this.observer.forget(gone);
        this.keepObserver?.forget(gone);
      }
    this.watched.set(node, watched);
    const mine = new Set(this.locks.heldLocks().map((l) => lockKeyString(l.key)));
    for (const [imageId, lockEntries] of candidates) {
      if (signal.aborted) return;
      if (mine.has(lockKeyString({ node, imageId }))) continue;
      await this.collect(node, imageId, lockEntries, round, signal, kept);
    }
  }

  private async collect(
    node: string,
    imageId: string,
    lockEntries: number,
    round: SweepRound,
    signal: AbortSignal,
    kept: ReadonlySet<string>,
  ): Promise<void> {
    let lock;
    try {
      // A stale gate is taken over only after the lock's own observation (LOCK_STALE_MS), so allow for it.
      lock = await this.locks.acquire(
        { node, imageId, mode: 'exclusive' },
        { timeoutMs: this.locks.timings.staleMs * 2 + 1_000, signal, attemptId: `sweep-${newAttemptId()}` },
      );
    } catch (error) {
      if (signal.aborted) return;
      round.busy += 1;
      this.options.log.debug?.(
        { node, imageId, err: errorText(error) },
        'leftover sweep: key busy, left for the next round',
      );
      return;
    }
    try {
      // Under the exclusive lock every partial file of this image belongs to a dead attempt.
      await lock.assertStillHeld();
      const tmpFiles = await this.store.removeLeftoverTmp(node, imageId, { keep: kept });
      round.keysCollected += 1;
      round.lockEntries += lockEntries;
      round.tmpFiles += tmpFiles;
      this.options.log.info(
        { node, imageId, lockEntries, tmpFiles, fencingToken: lock.fencingToken },
        'leftovers collected',
      );
    } finally {
      await lock.release();
    }
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
