import { errorText } from '@app/contracts';
import type { Logger } from '@app/contracts';
import { performance } from 'node:perf_hooks';
import type { CacheCleaner, CleanReport } from '@app/cache-cleaner';
import { summarizeCleanReport } from '@app/cache-cleaner';
import { RoundFsOps } from './round-fs-ops';
import type { RoundLease } from './round-lease';
import { type LeaseTicks, RoundSchedule } from './round-schedule';

export interface CleanerRoundsOptions {
  /** CLEANER_ENABLED: when false, start() does nothing and nothing is ever deleted. */
  enabled: boolean;
  /** CLEANER_INTERVAL_MS: from the end of one round to the start of the next. */
  intervalMs: number;
  /** The nodes of the cell (every node folder under CACHE_ROOT). */
  listNodes: () => Promise<string[]>;
  /** Told about every deleted image (the holder index forgets it at once). */
  onDeleted?: (node: string, imageId: string) => void;
  log: Pick<Logger, 'info' | 'warn' | 'debug'>;
  /** Shares the rounds with the cell's other conductors: one round per interval cell-wide (round-lease.ts). */
  lease?: RoundLease;
  /** The counter the cleaner's store was wrapped with (RoundFsOps.parts), for the rounds' fsOps. */
  fsOps?: RoundFsOps;
}

export interface CleaningRound {
  nodes: number;
  deleted: number;
  bytesFreed: number;
  skippedBusy: number;
  failedNodes: number;
  durationMs: number;
  /** Calls through the round's file-system seams (round-fs-ops.ts): the store's, the listing of the nodes. */
  fsOps: number;
}

/** The schedule as GET /status shows it. */
export interface CleanerRoundsView {
  enabled: boolean;
  intervalMs: number;
  rounds: number;
  running: boolean;
  /** When the timer fires next; null when disabled, stopped, or while a round runs. */
  nextRoundAt: string | null;
  /** With a cell-wide lease: what this conductor's timer ticks did (ran here, ran elsewhere, lease busy). */
  leaseTicks?: LeaseTicks | null;
  lastRound: (CleaningRound & { endedAt: string; aborted: boolean }) | null;
}

/**
 * Runs the cache cleaner over every node of the cell, one node after another, every CLEANER_INTERVAL_MS
 * (rounds never overlap; stop() aborts a round between two images and waits for it, so no cleaner lock
 * outlives the stop).
 */
export class CleanerRounds {
  private readonly schedule: RoundSchedule<CleaningRound>;
  private lastRound: CleanerRoundsView['lastRound'] = null;
  private readonly fsOps: RoundFsOps;
  private readonly listNodes: () => Promise<string[]>;

  constructor(
    private readonly cleaner: Pick<CacheCleaner, 'clean'>,
    private readonly options: CleanerRoundsOptions,
  ) {
    this.fsOps = options.fsOps ?? new RoundFsOps();
    this.listNodes = this.fsOps.fn(options.listNodes);
    this.schedule = new RoundSchedule((signal) => this.round(signal), options.intervalMs, options.lease);
  }

  get enabled(): boolean {
    return this.options.enabled;
  }

  get rounds(): number {
    return this.schedule.rounds;
  }

  view(): CleanerRoundsView {
    return {
      enabled: this.options.enabled,
      intervalMs: this.options.intervalMs,
      rounds: this.schedule.rounds,
      running: this.schedule.running,
      nextRoundAt: this.schedule.nextRoundAt,
      leaseTicks: this.schedule.leaseTicks && { ...this.schedule.leaseTicks },
      lastRound: this.lastRound && { ...this.lastRound },
    };
  }

  start(): void {
    if (!this.options.enabled) return;
    if (this.schedule.start())
      this.options.log.info({ intervalMs: this.options.intervalMs }, 'cache cleaner scheduled');
  }

  /** One round now (or the one running): every node, sequentially. Never throws. */
  runOnce(): Promise<CleaningRound> {
    return this.schedule.runOnce();
  }

  stop(): Promise<void> {
    return this.schedule.stop();
  }

  private async round(signal: AbortSignal): Promise<CleaningRound> {
    const started = performance.now();
    const round: CleaningRound = {
      nodes: 0,
      deleted: 0,
      bytesFreed: 0,
      skippedBusy: 0,
      failedNodes: 0,
      durationMs: 0,
      fsOps: 0,
    };
    this.fsOps.take();
    const { log } = this.options;
    let nodes: string[] = [];
    try {
      nodes = await this.listNodes();
    } catch (error) {
      log.warn({ err: errorText(error) }, 'cache cleaner: could not list the nodes');
    }
    for (const node of nodes) {
      if (signal.aborted) break;
      let report: CleanReport;
      try {
        report = await this.cleaner.clean(node, { signal: signal });
      } catch (error) {
        round.failedNodes += 1;
        log.warn({ node, err: errorText(error) }, 'cache cleaner: cleaning a node failed');
        continue;
      }
      round.nodes += 1;
      round.deleted += report.deleted.length;
      round.bytesFreed += report.bytesFreed;
      round.skippedBusy += report.skippedBusy.length;
      for (const d of report.deleted) this.options.onDeleted?.(node, d.imageId);
      const fields = {
        node,
        examined: report.examined,
        deleted: report.deleted.map((d) => ({ imageId: d.imageId, size: d.size, why: d.why })),
        keptPinned: report.keptPinned.length,
        skippedBusy: report.skippedBusy.length,
        keptChanged: report.keptChanged.length,
        errors: report.errors,
        bytesFreed: report.bytesFreed,
        bytesAfter: report.bytesAfter,
        overBudget: report.overBudget,
        durationMs: report.durationMs,
      };
      const worthTelling = report.deleted.length > 0 || report.errors.length > 0 || report.overBudget;
      if (worthTelling) log.info(fields, `cache cleaned: ${summarizeCleanReport(report)}`);
      else log.debug(fields, `cache cleaned: ${summarizeCleanReport(report)}`);
    }
    round.durationMs = Math.round(performance.now() - started);
    round.fsOps = this.fsOps.take();
    this.lastRound = { ...round, endedAt: new Date().toISOString(), aborted: signal.aborted };
    log.info({ ...round, aborted: signal.aborted }, 'cache cleaning round done');
    return round;
  }
}
