import type { Logger, PurgeJob } from '@app/contracts';
import type { ImagePurger } from '@app/cache-cleaner';
import type { ImageStore, JobRecord } from '@app/image-store';
import type { Delivery, Publisher } from '@app/messaging';
import { type JobProgress, jobEvent } from './job-progress';
import { nodeOutcome } from './job-node-outcomes';
import { reply } from './jobs-queue-answers';
import { type PurgeAttempt, purgeNodeSettlement } from './purge-outcome';

export interface PurgeJobDeps {
  store: ImageStore;
  purger: ImagePurger;
  progress: JobProgress;
  publisher: Publisher;
  conductorId: string;
  /** How long a purge waits for the copies reading a node's image, then reports that node busy. */
  purgeWaitMs: number;
  log: Logger;
  shutdown: AbortSignal;
  /** Throws (retryably) unless CACHE_ROOT is still the cell's folder. */
  requireCellFolder: () => Promise<void>;
}

/** Nodes one purge works on at once. */
const PURGE_CONCURRENCY = 4;

/**
 * Runs an accepted purge job to its end: the job-accepted event and answer, then every node without an
 * outcome purged under its lock and its outcome recorded (purgeNodeSettlement). A shutdown or a cell folder
 * gone throws: the message is handed back and resumes with the nodes left.
 */
export async function runPurge(
  deps: PurgeJobDeps,
  delivery: Delivery,
  record: JobRecord,
  job: PurgeJob,
): Promise<void> {
  const { store, progress } = deps;
  const status = (await store.jobs.status(record.jobId))!;
  await progress.publishAccepted(status);
  await reply(deps, delivery, jobEvent('job-accepted', status, { nodes: status.outcomes }));
  const done = new Set(status.outcomes.map((o) => o.node));
  const queue = record.nodes.filter((node) => !done.has(node));
  const worker = async () => {
    for (let node = queue.shift(); node !== undefined; node = queue.shift()) {
      deps.shutdown.throwIfAborted();
      const { verdict, cellFolderFirst } = purgeNodeSettlement(await purgeNode(deps, record, job, node));
      if (cellFolderFirst) await deps.requireCellFolder();
      await progress.nodeFinished(
        record.jobId,
        nodeOutcome(node, verdict, deps.conductorId, new Date().toISOString()),
      );
    }
  };
  await Promise.all(Array.from({ length: PURGE_CONCURRENCY }, worker));
  deps.log.info(
    { jobId: record.jobId, imageId: record.imageId, nodes: record.nodes.length },
    'purge job done',
  );
}

async function purgeNode(
  deps: PurgeJobDeps,
  record: JobRecord,
  job: PurgeJob,
  node: string,
): Promise<PurgeAttempt> {
  if (await deps.store.jobs.isCancelled(record.jobId)) return { cancelled: true };
  try {
    return {
      purged: await deps.purger.purge(node, record.imageId, {
        forceUnpin: job.forceUnpin ?? false,
        waitMs: deps.purgeWaitMs,
        signal: deps.shutdown,
      }),
    };
  } catch (error) {
    if (deps.shutdown.aborted) throw error;
    return { failed: error };
  }
}
