import type { Logger } from '@app/contracts';
import type { CacheCleaner, CleanReport } from '@app/cache-cleaner';
import { summarizeCleanReport } from '@app/cache-cleaner';
import { RoundFsOps } from './round-fs-ops';
import type { RoundLease } from './round-lease';
import { walkNodes } from './node-round';
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
    const totals = { deleted: 0, bytesFreed: 0, skippedBusy: 0 };
    this.fsOps.take();
    const { log } = this.options;
    const walk = await walkNodes({
      round: 'cache cleaner',
      nodeFailed: 'cleaning a node failed',
      listNodes: () => this.listNodes(),
      log,
      signal,
      visit: (node) => this.cleaner.clean(node, { signal }),
      record: (node, report: CleanReport) => {
        totals.deleted += report.deleted.length;
        totals.bytesFreed += report.bytesFreed;
        totals.skippedBusy += report.skippedBusy.length;
        for (const d of report.deleted) this.options.onDeleted?.(node, d.imageId);
        this.logNode(node, report);
      },
    });
    const round: CleaningRound = {
      nodes: walk.nodes,
      ...totals,
      failedNodes: walk.failed,
      durationMs: walk.durationMs,
      fsOps: this.fsOps.take(),
    };
    this.lastRound = { ...round, endedAt: new Date().toISOString(), aborted: walk.aborted };
    log.info({ ...round, aborted: walk.aborted }, 'cache cleaning round done');
    return round;
  }

  private logNode(node: string, report: CleanReport): void {
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
    if (worthTelling) this.options.log.info(fields, `cache cleaned: ${summarizeCleanReport(report)}`);
    else this.options.log.debug(fields, `cache cleaned: ${summarizeCleanReport(report)}`);
  }
}
