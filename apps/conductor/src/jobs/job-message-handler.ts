import { type CellTopology, type Logger, ReasonError } from '@app/contracts';
import type { ImagePurger } from '@app/cache-cleaner';
import type { ImageStore, JobRecord } from '@app/image-store';
import { type Delivery, handBackOnFailure, type Publisher } from '@app/messaging';
import type { CacheRootGuard } from '../cache-root/cache-root-guard';

import { answerCancel } from './cancel-job';
import type { CancelWatch } from './cancel-watch';
import { acceptJob } from './job-acceptance';
import type { JobProgress } from './job-progress';
import { acceptanceRefusal, admitJobsQueueMessage } from './jobs-queue-admission';
import { refuse } from './jobs-queue-answers';
import { startPrecache } from './precache-job';
import { runPurge } from './purge-job';

export interface JobMessageHandlerDeps {
  store: ImageStore;
  purger: ImagePurger;
  progress: JobProgress;
  cancels: CancelWatch;
  publisher: Publisher;
  topology: CellTopology;
  conductorId: string;
  /** How long a purge waits for the copies reading a node's image, then reports that node busy. */
  purgeWaitMs: number;
  log: Logger;
  shutdown: AbortSignal;
  /** Whether CACHE_ROOT is still the cell's: no job is judged on a dead mount's empty folder. */
  cacheRoot?: Pick<CacheRootGuard, 'check'>;
}

/**
 * One message of the jobs queue, from delivery to ack: a pre-cache job, a purge job, or a cancel.
 *
 * "Acked means safely somewhere else": a pre-cache job is acked only once its record is in the shared
 * folder and every node's copy is a durable, confirmed copy request (`<jobId>.<node>`, carrying the job
 * id) in the request queue, or the node already has its outcome. From then on the job is ordinary copy
 * requests, each redelivered on a crash like any other; a node's outcome is recorded before its copy
 * request is acked. A crash before the ack redelivers the job, which finds its record and publishes the
 * missing copies again: a request id seen twice is coalesced or answered already-present, so no node is
 * copied twice. A purge is acked when every node has its outcome; a crash resumes it with the nodes left.
 */
export class JobMessageHandler {
  constructor(private readonly deps: JobMessageHandlerDeps) {}

  async handle(delivery: Delivery): Promise<void> {
    await handBackOnFailure(delivery, () => this.process(delivery), {
      log: this.deps.log,
      shutdown: this.deps.shutdown,
      warning: 'could not finish a jobs-queue message; handing it back',
      quietAtShutdown: true,
    });
  }

  /** The dispatcher: admit the message (or refuse it), then hand it to the part for its kind. */
  private async process(delivery: Delivery): Promise<void> {
    const admission = admitJobsQueueMessage(
      delivery.content,
      delivery.properties.replyTo as string | undefined,
    );
    if ('refused' in admission) {
      await refuse(this.deps, delivery, admission.refused);
      return;
    }
    const message = admission.admitted;
    // Retryable, so handed back (with a pause): records and outcomes come only from the cell's folder.
    await this.requireCellFolder();
    if (message.type === 'cancel') await answerCancel(this.deps, delivery, message);
    else {
      let record: JobRecord;
      try {
        record = await acceptJob(this.deps, message);
      } catch (error) {
        const refusal = acceptanceRefusal(error, message.jobId);
        if (!refusal) throw error;
        await refuse(this.deps, delivery, refusal);
        return;
      }
      if (message.type === 'precache') await startPrecache(this.deps, delivery, record);
      else
        await runPurge(
          { ...this.deps, requireCellFolder: () => this.requireCellFolder() },
          delivery,
          record,
          message,
        );
    }
    delivery.ack();
  }

  private async requireCellFolder(): Promise<void> {
    const state = await this.deps.cacheRoot?.check();
    if (state && !state.available) throw new ReasonError('CACHE_UNAVAILABLE', state.problem);
  }
}
