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
