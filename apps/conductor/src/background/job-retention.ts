import { errorText } from '@app/contracts';
import type { Logger } from '@app/contracts';
import type { JobRecords, RequestAnswers } from '@app/image-store';
import type { RoundLease } from './round-lease';
import { RoundSchedule } from './round-schedule';

/** How often finished jobs and old cancel markers are looked for: they age in days. */
export const JOB_RETENTION_ROUND_MS = 60 * 60 * 1000;

type Removed = { jobs: number; cancels: number; answers: number };

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

  constructor(
    private readonly jobs: Pick<JobRecords, 'removeFinished'>,
    private readonly options: JobRetentionOptions,
  ) {
    this.schedule = new RoundSchedule(
      () => this.round(),
      options.intervalMs ?? JOB_RETENTION_ROUND_MS,
      options.lease,
    );
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
    try {
      const removed = {
        ...(await this.jobs.removeFinished(this.options.keepMs)),
        answers: (await this.options.answers?.removeOlderThan(this.options.keepMs)) ?? 0,
      };
      if (removed.jobs + removed.cancels + removed.answers > 0)
        this.options.log.info({ ...removed, keepMs: this.options.keepMs }, 'old job records removed');
      return removed;
    } catch (error) {
      this.options.log.warn({ err: errorText(error) }, 'job retention: a round failed');
      return { jobs: 0, cancels: 0, answers: 0 };
    }
  }
}
