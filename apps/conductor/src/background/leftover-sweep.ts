import * as path from 'node:path';
import { type Logger, imageIdSchema, errorText } from '@app/contracts';
import type { CacheEntries } from '@app/image-store';
import {
  type LockFileSystem,
  type NodeLockManager,
  StalenessObserver,
  inspectLocks,
  isRetiredName,
  lockEntryPath,
  lockKeyDir,
  lockKeyString,
  newAttemptId,
  nodeLockFileSystem,
  nodeLocksDir,
  removeRetired,
} from '@app/locking';
import { walkNodes } from './node-round';
import { RoundFsOps } from './round-fs-ops';
import type { RoundLease } from './round-lease';
import { type LeaseTicks, RoundSchedule } from './round-schedule';

/** What the sweep reads and removes in the caches, besides lock folders. */
export type SweptEntries = Pick<
  CacheEntries,
  'listTmp' | 'removeLeftoverTmp' | 'resumablePartials' | 'collectStaleSwarmRecords'
>;

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
  /** The listings and stats of lock folders (a spec counts them); node's fs by default. */
  fs?: LockFileSystem;
  /** Idle key folders retired at most per round, beside every leftover collected (default 5,000). */
  maxRetiredPerRound?: number;
  /** Shares the rounds with the cell's other conductors: one round per interval cell-wide (round-lease.ts). */
  lease?: RoundLease;
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
  /** Idle key folders removed (retired under their lock). */
  keysRetired: number;
  /** Records of copies in progress whose copy died (`.icc-swarms/`), removed. */
  swarmRecords: number;
  failed: number;
  durationMs: number;
  /**
   * Calls through the round's file-system seams (round-fs-ops.ts): 2 per node and 2 a round when idle
   * (the node list, and the listing of `.icc-swarms/`).
   */
  fsOps: number;
}

/** What a round counts that the sweep also adds up since the conductor started. */
const TOTALLED = ['keysCollected', 'lockEntries', 'tmpFiles', 'busy', 'keysRetired', 'swarmRecords'] as const;
type SweepTotals = Pick<SweepRound, (typeof TOTALLED)[number]>;

/** The sweep as GET /status shows it. */
export interface LeftoverSweepView {
  enabled: boolean;
  intervalMs: number;
  rounds: number;
  running: boolean;
  nextRoundAt: string | null;
  /** With a cell-wide lease: what this conductor's timer ticks did (ran here, ran elsewhere, lease busy). */
  leaseTicks?: LeaseTicks | null;
  /** Since the conductor started. */
  totals: SweepTotals;
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
  private readonly totals = Object.fromEntries(TOTALLED.map((k) => [k, 0])) as SweepTotals;
  private readonly fs: LockFileSystem;
  private readonly fsOps = new RoundFsOps();
  private readonly store: SweptEntries;
  private readonly listNodes: () => Promise<string[]>;
  private readonly inspectLocks: typeof inspectLocks;

  constructor(
    store: SweptEntries,
    private readonly locks: NodeLockManager,
    private readonly options: LeftoverSweepOptions,
  ) {
    this.schedule = new RoundSchedule((signal) => this.round(signal), options.intervalMs, options.lease);
    this.fs = this.fsOps.seam(options.fs ?? nodeLockFileSystem);
    this.store = this.fsOps.seam(store);
    this.listNodes = this.fsOps.fn(options.listNodes);
    this.inspectLocks = this.fsOps.fn(inspectLocks);
    this.observer = new StalenessObserver(locks.timings.staleMs, this.fs);
    const keepMs = options.resumableKeepMs ?? 0;
    this.keepObserver = keepMs > locks.timings.staleMs ? new StalenessObserver(keepMs, this.fs) : undefined;
  }

  private get maxRetiredPerRound(): number {
    return this.options.maxRetiredPerRound ?? 5_000;
  }

  private get staleMs(): number {
    return this.locks.timings.staleMs;
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
      leaseTicks: this.schedule.leaseTicks && { ...this.schedule.leaseTicks },
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
    const round: SweepRound = {
      nodes: 0,
      keysCollected: 0,
      lockEntries: 0,
      tmpFiles: 0,
      busy: 0,
      keysRetired: 0,
      swarmRecords: 0,
      failed: 0,
      durationMs: 0,
      fsOps: 0,
    };
    this.fsOps.take();
    const walk = await walkNodes({
      round: 'leftover sweep',
      nodeFailed: 'a node failed',
      listNodes: () => this.listNodes(),
      log: this.options.log,
      signal,
      visit: (node) => this.sweepNode(node, round, signal),
    });
    // A killed copy's record of its pieces (readers already ignore it: swarm-record.ts).
    round.swarmRecords = await this.store.collectStaleSwarmRecords().catch((error: unknown) => {
      this.options.log.warn({ err: errorText(error) }, 'leftover sweep: records of copies in progress');
      return 0;
    });
    round.nodes = walk.nodes;
    round.failed = walk.failed;
    round.durationMs = walk.durationMs;
    round.fsOps = this.fsOps.take();
    for (const k of TOTALLED) this.totals[k] += round[k];
    this.lastRound = { ...round, endedAt: new Date().toISOString() };
    const worthTelling =
      round.keysCollected > 0 || round.keysRetired > 0 || round.swarmRecords > 0 || round.failed > 0;
    (worthTelling ? this.options.log.info : this.options.log.debug)?.call(
      this.options.log,
      round,
      'leftover sweep round done',
    );
    return round;
  }

  /**
   * One node: one listing of its `locks/` and one of its `tmp/`, and one stat per key folder there. Idle
   * key folders are retired (removed under their lock), so once a node is quiet those two listings are
   * all it costs a round. A key folder's mtime moves with every claim, release and reader entry; only one
   * that kept it for LOCK_STALE_MS of this sweep's watching is looked into.
   */
  private async sweepNode(node: string, round: SweepRound, signal: AbortSignal): Promise<void> {
    const root = this.options.root;
    const watched = new Set<string>();
    const entriesByKey = new Map<string, { stale: number; live: number }>();
    const quietKeys: string[] = [];
    for (const name of await this.listLockFolder(node)) {
      if (isRetiredName(name)) {
        // A retirement that did not get to its rm -r (a crash): nothing refers to it any more.
        await removeRetired(path.join(nodeLocksDir(root, node), name), this.fs);
        continue;
      }
      if (!imageIdSchema.safeParse(name).success) continue;
      const folder = path.join(nodeLocksDir(root, node), name);
      watched.add(folder);
      if (!(await this.observer.isStale(folder))) continue;
      quietKeys.push(name);
      // Candidates only when this sweep watched every lock entry unchanged for the stale time on its own
      // clock (never by comparing mtimes with this host's wall clock); a live one means the key is in use.
      const seen = { stale: 0, live: 0 };
      for (const entry of (await this.inspectLocks(root, { node, imageId: name, staleMs: this.staleMs }))
        .entries) {
        const heartbeat = lockEntryPath(root, entry);
        watched.add(heartbeat);
        seen[(await this.observer.isStale(heartbeat)) ? 'stale' : 'live'] += 1;
      }
      entriesByKey.set(name, seen);
    }
    const candidates = new Map<string, number>(); // imageId -> stale lock entries
    for (const [imageId, { stale, live }] of entriesByKey) if (live === 0) candidates.set(imageId, stale);
    // Partial files: candidates once watched unchanged for the stale time, unless their key is in use. A
    // resumable one (a killed copy's bytes, checkpointed) waits longer: its request is usually redelivered
    // and continues it, and the sweep may win the race for the dead holder's lock.
    const tmps = await this.store.listTmp(node);
    const resumable =
      this.keepObserver && tmps.length > 0
        ? new Set(await this.store.resumablePartials(node))
        : new Set<string>();
    const kept = new Set<string>();
    const keptImages = new Set<string>();
    const withLeftoverTmp = new Set<string>();
    for (const tmp of tmps) {
      watched.add(tmp.path);
      if (entriesByKey.get(tmp.imageId)?.live) continue;
      if (resumable.has(tmp.path) && !(await this.keepObserver!.isStale(tmp.path))) {
        kept.add(tmp.path);
        keptImages.add(tmp.imageId);
        continue;
      }
      if (await this.observer.isStale(tmp.path)) {
        candidates.set(tmp.imageId, candidates.get(tmp.imageId) ?? 0);
        withLeftoverTmp.add(tmp.imageId);
      }
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
      // Nothing to collect, only a folder to retire: at most so many a round (a cell's whole history is
      // retired over several rounds instead of one that holds the round's lease for hours).
      const retireOnly = lockEntries === 0 && !withLeftoverTmp.has(imageId);
      if (retireOnly && round.keysRetired >= this.maxRetiredPerRound) continue;
      await this.collect(node, imageId, lockEntries, round, signal, kept, !keptImages.has(imageId));
    }
  }

  /** The names in `<node>/locks/`; none when the node has no lock folder. */
  private async listLockFolder(node: string): Promise<string[]> {
    try {
      return await this.fs.readdir(nodeLocksDir(this.options.root, node));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw error;
    }
  }

  private async collect(
    node: string,
    imageId: string,
    lockEntries: number,
    round: SweepRound,
    signal: AbortSignal,
    kept: ReadonlySet<string>,
    retire: boolean,
  ): Promise<void> {
    let outcome;
    try {
      // A gate this sweep did not watch (one claimed since) is taken over after LOCK_STALE_MS: allow for it.
      // Under the exclusive lock every partial file of this image belongs to a dead attempt; then the key
      // folder itself is retired (unless a resumable partial of the image is kept for a later attempt).
      outcome = await this.locks.retireKey(
        { node, imageId },
        {
          timeoutMs: this.staleMs * 2 + 1_000,
          signal,
          attemptId: `sweep-${newAttemptId()}`,
          // This sweep watched the key's entries frozen for the stale time already: the lock takes a dead
          // gate over and drains dead readers at once, not after another LOCK_STALE_MS of its own watching.
          observer: this.observer,
          underLock: async (lock) => {
            await lock.assertStillHeld();
            const tmpFiles = await this.store.removeLeftoverTmp(node, imageId, { keep: kept });
            round.lockEntries += lockEntries;
            round.tmpFiles += tmpFiles;
            if (lockEntries > 0 || tmpFiles > 0) {
              round.keysCollected += 1;
              this.options.log.info(
                { node, imageId, lockEntries, tmpFiles, fencingToken: lock.fencingToken },
                'leftovers collected',
              );
            }
            return retire;
          },
        },
      );
    } catch (error) {
      if (signal.aborted) return;
      round.busy += 1;
      this.options.log.debug?.(
        { node, imageId, err: errorText(error) },
        'leftover sweep: key busy, left for the next round',
      );
      return;
    } finally {
      // What the lock watched in the key folder on our behalf (a generation claimed meanwhile): the next
      // round lists the folder again, and the forget-what-went-away bookkeeping never saw these paths.
      this.observer.forgetBelow(lockKeyDir(this.options.root, { node, imageId }));
    }
    if (outcome === 'retired') round.keysRetired += 1;
  }
}
