import { type CancelRequest, type CellTopology, type Logger, cancelRoutingKey } from '@app/contracts';
import type { ImageStore } from '@app/image-store';
import { type Delivery, type Publisher, publishRouted } from '@app/messaging';
import {
  type CancelActs,
  type CancelFinding,
  cancelAnswer,
  cancelAnswerBody,
  jobSplitsOfRequest,
} from './cancel-answers';
import type { CancelWatch } from './cancel-watch';
import type { JobProgress } from './job-progress';
import { reply } from './jobs-queue-answers';

export interface CancelJobDeps {
  store: ImageStore;
  cancels: CancelWatch;
  progress: JobProgress;
  publisher: Publisher;
  topology: CellTopology;
  conductorId: string;
  log: Logger;
}

/**
 * Answers a cancel of a job or of one copy request: finds its state in the cell's folder, acts when
 * cancelAnswer asks (abort the copies running here, write the cancel marker), and publishes the answer on
 * cancel.<status> and to reply_to.
 */
export async function answerCancel(
  deps: CancelJobDeps,
  delivery: Delivery,
  cancel: CancelRequest,
): Promise<void> {
  const { conductorId } = deps;
  const finding = await findCancelTarget(deps.store, cancel);
  const first = cancelAnswer(finding, conductorId);
  const { answer } =
    'answer' in first ? first : cancelAnswer(finding, conductorId, await cancelNow(deps, finding));
  const body = cancelAnswerBody(cancel, answer, conductorId, new Date().toISOString());
  await publishRouted(
    deps.publisher,
    deps.topology.eventsExchange.name,
    cancelRoutingKey(body.status),
    body,
    {
      persistent: false,
    },
  );
  await reply(deps, delivery, body);
  deps.log.info({ requestId: cancel.requestId, jobId: cancel.jobId, status: body.status }, 'cancel answered');
}

async function findCancelTarget(store: ImageStore, cancel: CancelRequest): Promise<CancelFinding> {
  if (cancel.jobId !== undefined)
    return { target: 'job', jobId: cancel.jobId, status: await store.jobs.status(cancel.jobId) };
  const requestId = cancel.requestId!;
  let job: { jobId: string; node: string } | undefined;
  for (const split of jobSplitsOfRequest(requestId)) {
    const record = await store.jobs.read(split.jobId).catch(() => undefined);
    if (record?.nodes.includes(split.node)) {
      job = split;
      break;
    }
  }
  if (job)
    return { target: 'request', requestId, job, finished: await store.jobs.outcome(job.jobId, job.node) };
  // A plain request's first final answer is recorded before it is sent (copy-settler.ts).
  return { target: 'request', requestId, answered: await store.answers.read(requestId) };
}

/** Aborts the copies running here, then writes the cancel marker every conductor's copies look at. */
async function cancelNow(deps: CancelJobDeps, finding: CancelFinding): Promise<CancelActs> {
  const { store, cancels } = deps;
  if (finding.target === 'request') {
    const aborted = cancels.abortRunning({ requestId: finding.requestId });
    return { aborted, fresh: await store.jobs.cancelRequest(finding.requestId) };
  }
  // Local copies first: the marker's fsyncs can take long under load, a running copy would go on meanwhile.
  const aborted = cancels.abortRunning({ jobId: finding.jobId });
  await store.jobs.cancel(finding.jobId);
  const after = await store.jobs.status(finding.jobId);
  if (after) await deps.progress.publishAccepted(after).catch(() => undefined);
  return { aborted };
}
