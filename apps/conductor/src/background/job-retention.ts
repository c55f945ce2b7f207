import { errorText } from '@app/contracts';
import type { Logger } from '@app/contracts';
import { performance } from 'node:perf_hooks';
import type { JobRecords, RequestAnswers } from '@app/image-store';
import type { RoundLease } from './round-lease';
import { RoundFsOps } from './round-fs-ops';
import { RoundSchedule } from './round-schedule';

/** How often finished jobs and old cancel markers are looked for: they age in days. */
export const JOB_RETENTION_ROUND_MS = 60 * 60 * 1000;

type Removed = { jobs: number; cancels: number; answers: number };

/** Job retention as GET /status shows it. */
export interface JobRetentionView {
  enabled: boolean;
  intervalMs: number;
  rounds: number;
  /**
   * The last round: what it removed, its time, and its calls through its seams (round-fs-ops.ts: each is a
   * walk of a folder of the shared file system, so this is a lower bound of its file-system calls).
   */
  lastRound: (Removed & { durationMs: number; fsOps: number; endedAt: string }) | null;
}

export interface JobRetentionOptions {
  /** JOB_KEEP_MS: how long a finished job and a cancel marker stay; 0 keeps them for ever. */
  keepMs: number;
  /** The recorded final answers of plain requests, removed at the same age as cancel markers. */
  answers?: Pick<RequestAnswers, 'removeOlderThan'>;
  log: Pick<Logger, 'info' | 'warn'>;
  /** From the end of one round to the start of the next (default JOB_RETENTION_ROUND_MS). */
  intervalMs?: number;
  /** Shares the rounds with the cell's other conductors: one round per interval cell-wide (round-lease.ts). */
  lease?: RoundLease;
}

/**
 * Removes, every hour, the job records (`.icc-jobs/<jobId>/`) of finished jobs, the cancel markers
 * (`.icc-cancels/`) and the requests' final answers (`.icc-answers/`) older than JOB_KEEP_MS: without it
 * they pile up in the shared folder for ever. With a lease one conductor of the cell runs a round per
 * interval; two removing the same record at once would still be harmless (rm of what is gone).
 */
export class JobRetention {
  private readonly schedule: RoundSchedule<Removed>;
  private readonly fsOps = new RoundFsOps();
  private readonly jobs: Pick<JobRecords, 'removeFinished'>;
  private readonly answers: Pick<RequestAnswers, 'removeOlderThan'> | undefined;
  private lastRound: JobRetentionView['lastRound'] = null;

  constructor(
    jobs: Pick<JobRecords, 'removeFinished'>,
    private readonly options: JobRetentionOptions,
  ) {
    this.jobs = this.fsOps.seam(jobs);
    this.answers = options.answers && this.fsOps.seam(options.answers);
    this.schedule = new RoundSchedule(
      () => this.round(),
      options.intervalMs ?? JOB_RETENTION_ROUND_MS,
      options.lease,
    );
  }

  view(): JobRetentionView {
    return {
      enabled: this.options.keepMs > 0,
      intervalMs: this.options.intervalMs ?? JOB_RETENTION_ROUND_MS,
      rounds: this.schedule.rounds,
      lastRound: this.lastRound && { ...this.lastRound },
    };
  }

  start(): void {
    if (this.options.keepMs > 0) this.schedule.start();
  }

  /** One round now (or the one running). Never throws. */
  runOnce(): Promise<Removed> {
    return this.schedule.runOnce();
  }

  stop(): Promise<void> {
    return this.schedule.stop();
  }

  private async round(): Promise<Removed> {
    const started = performance.now();
    this.fsOps.take();
    let removed: Removed = { jobs: 0, cancels: 0, answers: 0 };
    try {
      removed = {
        ...(await this.jobs.removeFinished(this.options.keepMs)),
        answers: (await this.answers?.removeOlderThan(this.options.keepMs)) ?? 0,
      };
      if (removed.jobs + removed.cancels + removed.answers > 0)
        this.options.log.info({ ...removed, keepMs: this.options.keepMs }, 'old job records removed');
    } catch (error) {
      this.options.log.warn({ err: errorText(error) }, 'job retention: a round failed');
    }
    const durationMs = Math.round(performance.now() - started);
    this.lastRound = { ...removed, durationMs, fsOps: this.fsOps.take(), endedAt: new Date().toISOString() };
    return removed;
  }
}
