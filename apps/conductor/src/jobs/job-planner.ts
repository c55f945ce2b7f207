import { createHash } from 'node:crypto';
import { ReasonError, type JobRequest } from '@app/contracts';
import type { ImageStore, JobRecord } from '@app/image-store';

/**
 * The nodes a job works on. An explicit list is kept as given (unknown nodes get a `skipped-unknown`
 * outcome, not a refusal of the whole job); `all` is every registered node, and `percent` a share of
 * them chosen by a hash of the job id, so the same job always picks the same nodes.
 */
export async function planJobNodes(store: ImageStore, job: JobRequest): Promise<string[]> {
  if (job.nodes) return [...job.nodes];
  const registered: string[] = [];
  for (const node of await store.entries.listNodes())
    if (await store.markers.isRegistered(node)) registered.push(node);
  if (registered.length === 0)
    throw new ReasonError('INVALID_REQUEST', 'all: the cell has no registered node (icc node add)');
  if (job.percent === undefined) return registered;
  const count = Math.ceil((registered.length * job.percent) / 100);
  const rank = (node: string) => createHash('sha256').update(`${job.jobId}\n${node}`).digest('hex');
  return registered
    .map((node) => ({ node, rank: rank(node) }))
    .sort((a, b) => a.rank.localeCompare(b.rank))
    .slice(0, count)
    .map((n) => n.node)
    .sort();
}

export function jobRecordOf(job: JobRequest, nodes: string[], conductorId: string): JobRecord {
  return {
    v: 1,
    jobId: job.jobId,
    type: job.type,
    imageId: job.imageId,
    ...(job.type === 'precache' && job.sha256 ? { sha256: job.sha256 } : {}),
    ...(job.type === 'purge' && job.forceUnpin ? { forceUnpin: true } : {}),
    nodes,
    createdAt: new Date().toISOString(),
    createdBy: conductorId,
  };
}

/** A job id sent again must mean the same job: refuse one reused for another image or kind. */
export function assertSameJob(existing: JobRecord, job: JobRequest): void {
  if (existing.type !== job.type || existing.imageId !== job.imageId)
    throw new ReasonError(
      'INVALID_REQUEST',
      `jobId: ${job.jobId} is already the ${existing.type} job of image ${existing.imageId}; choose another job id`,
    );
}
