import type { Logger } from '@app/contracts';
import type { JobRecords } from '@app/image-store';
import { RoundSchedule } from './round-schedule';

/** How often finished jobs and old cancel markers are looked for: they age in days. */
export const JOB_RETENTION_ROUND_MS = 60 * 60 * 1000;

export interface JobRetentionOptions {
  /** JOB_KEEP_MS: how long a finished job and a cancel marker stay; 0 keeps them for ever. */
  keepMs: number;
  log: Pick<Logger, 'info' | 'warn'>;
  /** From the end of one round to the start of the next (default JOB_RETENTION_ROUND_MS). */
  intervalMs?: number;
}

/**
 * Removes, every hour, the job records (`.icc-jobs/<jobId>/`) of finished jobs and the cancel markers
 * (`.icc-cancels/`) older than JOB_KEEP_MS: without it they pile up in the shared folder for ever. Every
 * conductor of the cell runs it; two removing the same job at once is harmless (rm of what is gone).
 */
export class JobRetention {
  private readonly schedule: RoundSchedule<{ jobs: number; cancels: number }>;

  constructor(
    private readonly jobs: Pick<JobRecords, 'removeFinished'>,
    private readonly options: JobRetentionOptions,
  ) {
    this.schedule = new RoundSchedule(() => this.round(), options.intervalMs ?? JOB_RETENTION_ROUND_MS);
  }

  start(): void {
    if (this.options.keepMs > 0) this.schedule.start();
  }

  /** One round now (or the one running). Never throws. */
  runOnce(): Promise<{ jobs: number; cancels: number }> {
    return this.schedule.runOnce();
  }

  stop(): Promise<void> {
    return this.schedule.stop();
  }

  private async round(): Promise<{ jobs: number; cancels: number }> {
    try {
      const removed = await this.jobs.removeFinished(this.options.keepMs);
      if (removed.jobs + removed.cancels > 0)
        this.options.log.info({ ...removed, keepMs: this.options.keepMs }, 'old job records removed');
      return removed;
    } catch (error) {
      this.options.log.warn(
        { err: error instanceof Error ? error.message : String(error) },
        'job retention: a round failed',
      );
      return { jobs: 0, cancels: 0 };
    }
  }
}
