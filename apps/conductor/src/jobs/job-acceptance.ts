import type { JobRequest } from '@app/contracts';
import type { ImageStore, JobRecord } from '@app/image-store';
import { type NodeFacts, type NodeVerdict, nodeOutcome, nodeStart } from './job-node-outcomes';
import { assertSameJob, jobRecordOf, planJobNodes } from './job-planner';

export interface JobAcceptanceDeps {
  store: ImageStore;
  conductorId: string;
}

/**
 * Writes the job's record (or reads the one a first delivery wrote) and the outcomes known at once: the
 * nodes a job skips (nodeStart). Throws a final ReasonError for a job id reused for another job.
 */
export async function acceptJob(deps: JobAcceptanceDeps, job: JobRequest): Promise<JobRecord> {
  const { store, conductorId } = deps;
  const existing = await store.jobs.read(job.jobId);
  if (existing) assertSameJob(existing, job);
  const record =
    existing ??
    (await store.jobs.create(jobRecordOf(job, await planJobNodes(store, job), conductorId))).record;
  assertSameJob(record, job);
  const cancelled = await store.jobs.isCancelled(job.jobId);
  const known = new Set((await store.jobs.outcomes(job.jobId)).map((o) => o.node));
  for (const node of record.nodes) {
    if (known.has(node)) continue;
    const skip = await nodeSkip(store, record, node, cancelled);
    if (skip)
      await store.jobs.recordOutcome(
        job.jobId,
        nodeOutcome(node, skip, conductorId, new Date().toISOString()),
      );
  }
  return record;
}

/** Reads the node's markers as far as nodeStart asks for them: none for a cancelled job, draining only for a pre-cache. */
async function nodeSkip(
  store: ImageStore,
  record: JobRecord,
  node: string,
  cancelled: boolean,
): Promise<NodeVerdict | undefined> {
  const facts: NodeFacts = { cancelled };
  for (;;) {
    const start = nodeStart(record.type, facts);
    if ('skip' in start) return start.skip;
    if ('start' in start) return undefined;
    if (start.need === 'registration') facts.registration = await store.markers.nodeRegistration(node);
    else facts.draining = await store.markers.isDraining(node);
  }
}
