import type { JobRecords } from '@app/image-store';

/** One job as GET /status shows it: counts only (the per-node table is `icc job status <id>`). */
export interface JobView {
  jobId: string;
  type: 'precache' | 'purge';
  imageId: string;
  state: 'running' | 'done';
  cancelled: boolean;
  nodesDone: number;
  nodesTotal: number;
  failed: number;
  bytesDone: number;
  createdAt: string;
}

/** How many jobs /status lists, newest first: reading one costs a readdir of its nodes folder. */
export const STATUS_JOB_LIMIT = 20;

/** The cell's newest jobs from the shared folder, the same for every conductor. */
export async function recentJobs(jobs: JobRecords, limit = STATUS_JOB_LIMIT): Promise<JobView[]> {
  const views: JobView[] = [];
  for (const jobId of await jobs.list(limit)) {
    const status = await jobs.status(jobId).catch(() => undefined);
    if (!status) continue;
    views.push({
      jobId,
      type: status.record.type,
      imageId: status.record.imageId,
      state: status.state,
      cancelled: status.cancelled,
      nodesDone: status.nodesDone,
      nodesTotal: status.nodesTotal,
      failed: status.failed,
      bytesDone: status.bytesDone,
      createdAt: status.record.createdAt,
    });
  }
  return views;
}

export interface RecentJobsOptions {
  /** A read of the shared folder slower than this is not waited for: the last jobs read are shown. */
  timeoutMs?: number;
  /** Jobs read this recently are shown again without reading (the status page polls every second). */
  maxAgeMs?: number;
}

/**
 * The jobs GET /status shows, read from the shared folder without ever holding /status up: at most one
 * read at a time (a read hung on a dead mount holds a file-system thread; a second one would hold
 * another), waited for at most `timeoutMs`, after which the last jobs read are shown.
 */
export class RecentJobs {
  private last: JobView[] = [];
  private readAtMs = -Infinity;
  private reading: Promise<JobView[]> | undefined;

  constructor(
    private readonly read: () => Promise<JobView[]>,
    private readonly options: RecentJobsOptions = {},
    private readonly now: () => number = () => performance.now(),
  ) {}

  async recent(): Promise<JobView[]> {
    if (this.now() - this.readAtMs < (this.options.maxAgeMs ?? 1_000)) return this.last;
    this.reading ??= this.read()
      .then((jobs) => {
        this.last = jobs;
        this.readAtMs = this.now();
        return jobs;
      })
      .catch(() => this.last)
      .finally(() => (this.reading = undefined));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<JobView[]>((resolve) => {
      timer = setTimeout(() => resolve(this.last), this.options.timeoutMs ?? 2_000);
    });
    try {
      return await Promise.race([this.reading, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
