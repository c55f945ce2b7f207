import {
  type CellTopology,
  type CopyRequest,
  type Logger,
  COPY_REQUEST_VERSION,
  jobCopyRequestId,
} from '@app/contracts';
import type { ImageStore, JobRecord } from '@app/image-store';
import { type Delivery, type Publisher, publishRouted } from '@app/messaging';
import { type JobProgress, jobEvent } from './job-progress';
import { reply } from './jobs-queue-answers';

export interface PrecacheJobDeps {
  store: ImageStore;
  progress: JobProgress;
  publisher: Publisher;
  topology: CellTopology;
  log: Logger;
}

/** Copy requests of one job published at once (each one confirmed). */
const PUBLISH_BATCH = 64;

/**
 * Starts an accepted pre-cache job: one durable copy request per node without an outcome, then the
 * job-accepted event and answer. From then on the job is ordinary copy requests; a node's outcome is
 * recorded when its copy request is settled.
 */
export async function startPrecache(
  deps: PrecacheJobDeps,
  delivery: Delivery,
  record: JobRecord,
): Promise<void> {
  const { store, publisher, topology } = deps;
  const done = new Set((await store.jobs.outcomes(record.jobId)).map((o) => o.node));
  const pending = record.nodes.filter((node) => !done.has(node));
  for (let i = 0; i < pending.length; i += PUBLISH_BATCH) {
    await Promise.all(
      pending.slice(i, i + PUBLISH_BATCH).map((node) => {
        const request = jobCopyRequest(record, node);
        return publishRouted(publisher, '', topology.requestQueue.name, request, {
          messageId: request.requestId,
          mandatory: true,
        });
      }),
    );
  }
  const status = (await store.jobs.status(record.jobId))!;
  await deps.progress.publishAccepted(status);
  await reply(deps, delivery, jobEvent('job-accepted', status, { nodes: status.outcomes }));
  deps.log.info(
    {
      jobId: record.jobId,
      imageId: record.imageId,
      nodes: record.nodes.length,
      published: pending.length,
      redelivered: delivery.redelivered,
    },
    'pre-cache job accepted',
  );
}

/** The copy request of a pre-cache job for one node: its id is `<jobId>.<node>`, so a job sent again never copies twice. */
export function jobCopyRequest(record: JobRecord, node: string): CopyRequest {
  return {
    v: COPY_REQUEST_VERSION,
    requestId: jobCopyRequestId(record.jobId, node),
    imageId: record.imageId,
    destination: node,
    jobId: record.jobId,
    // A pre-cache copy waits behind copies a VM boot is waiting on (BACKGROUND_*_BPS caps).
    priority: 'background',
    ...(record.sha256 ? { sha256: record.sha256 } : {}),
  };
}
