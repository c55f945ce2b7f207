import {
  type Logger,
  type CancelAnswer,
  type CancelRequest,
  type CellTopology,
  ReasonError,
  type CopyRequest,
  COPY_REQUEST_VERSION,
  JOB_MESSAGE_VERSION,
  type JobRefusal,
  type JobRequest,
  type NodeOutcome,
  type PurgeJob,
  type ReasonCode,
  cancelRoutingKey,
  jobCopyRequestId,
  jobIdSchema,
  nodeIdSchema,
  jobRoutingKey,
  parseJobsQueueMessage,
  replyToProblem,
  errorText,
} from '@app/contracts';
import type { ImagePurger } from '@app/cache-cleaner';
import type { ImageStore, JobRecord } from '@app/image-store';
import { type Delivery, type Publisher, publishRouted, publishToDeadLetter } from '@app/messaging';
import type { CacheRootGuard } from '../cache-root/cache-root-guard';
import type { CancelWatch } from './cancel-watch';
import { type JobProgress, jobEvent } from './job-progress';
import { assertSameJob, jobRecordOf, planJobNodes } from './job-planner';

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

/** Copy requests of one job published at once (each one confirmed). */
const PUBLISH_BATCH = 64;
/** Nodes one purge works on at once. */
const PURGE_CONCURRENCY = 4;
const REQUEUE_PAUSE_MS = 1_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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
    try {
      await this.process(delivery);
    } catch (error) {
      if (this.deps.shutdown.aborted) {
        delivery.nackRequeue();
        return;
      }
      this.deps.log.warn(
        { err: errorText(error), messageId: delivery.properties.messageId },
        'could not finish a jobs-queue message; handing it back',
      );
      await sleep(REQUEUE_PAUSE_MS);
      delivery.nackRequeue();
    }
  }

  private async process(delivery: Delivery): Promise<void> {
    let message;
    try {
      const replyTo = delivery.properties.replyTo as string | undefined;
      const problem = replyTo === undefined ? undefined : replyToProblem(replyTo);
      if (problem) throw new ReasonError('INVALID_REQUEST', problem);
      message = parseJobsQueueMessage(delivery.content);
    } catch (error) {
      await this.refuse(delivery, error);
      return;
    }
    // Retryable, so handed back (with a pause): records and outcomes come only from the cell's folder.
    await this.requireCellFolder();
    if (message.type === 'cancel') await this.cancel(delivery, message);
    else {
      let record: JobRecord;
      try {
        record = await this.accept(message);
      } catch (error) {
        if (!(error instanceof ReasonError) || error.retryable) throw error;
        await this.refuse(delivery, error, message.jobId);
        return;
      }
      if (message.type === 'precache') await this.startPrecache(delivery, record);
      else await this.purge(delivery, record, message);
    }
    delivery.ack();
  }

  /** Writes the job's record (or reads the one a first delivery wrote) and the outcomes known at once. */
  private async accept(job: JobRequest): Promise<JobRecord> {
    const { store } = this.deps;
    const existing = await store.jobs.read(job.jobId);
    if (existing) assertSameJob(existing, job);
    const record =
      existing ??
      (await store.jobs.create(jobRecordOf(job, await planJobNodes(store, job), this.deps.conductorId)))
        .record;
    assertSameJob(record, job);
    const cancelled = await store.jobs.isCancelled(job.jobId);
    const known = new Set((await store.jobs.outcomes(job.jobId)).map((o) => o.node));
    for (const node of record.nodes) {
      if (known.has(node)) continue;
      const skip = await this.skipReason(node, record, cancelled);
      if (skip) await store.jobs.recordOutcome(job.jobId, this.outcome(node, skip.outcome, skip.detail));
    }
    return record;
  }

  private async skipReason(
    node: string,
    record: JobRecord,
    cancelled: boolean,
  ): Promise<{ outcome: NodeOutcome['outcome']; detail: string } | undefined> {
    if (cancelled)
      return { outcome: 'cancelled', detail: 'the job was cancelled before this node was started' };
    const registration = await this.deps.store.markers.nodeRegistration(node);
    if (!registration.registered)
      return {
        outcome: 'skipped-unknown',
        detail: `not a registered node of the cell (${registration.problem})`,
      };
    if (record.type === 'precache' && (await this.deps.store.markers.isDraining(node)))
      return { outcome: 'skipped-draining', detail: 'the node is marked draining' };
    return undefined;
  }

  private async startPrecache(delivery: Delivery, record: JobRecord): Promise<void> {
    const { store, publisher, topology } = this.deps;
    const done = new Set((await store.jobs.outcomes(record.jobId)).map((o) => o.node));
    const pending = record.nodes.filter((node) => !done.has(node));
    for (let i = 0; i < pending.length; i += PUBLISH_BATCH) {
      await Promise.all(
        pending.slice(i, i + PUBLISH_BATCH).map((node) => {
          const request: CopyRequest = {
            v: COPY_REQUEST_VERSION,
            requestId: jobCopyRequestId(record.jobId, node),
            imageId: record.imageId,
            destination: node,
            jobId: record.jobId,
            // A pre-cache copy waits behind copies a VM boot is waiting on (BACKGROUND_*_BPS caps).
            priority: 'background',
            ...(record.sha256 ? { sha256: record.sha256 } : {}),
          };
          return publishRouted(publisher, '', topology.requestQueue.name, request, {
            messageId: request.requestId,
            mandatory: true,
          });
        }),
      );
    }
    const status = (await store.jobs.status(record.jobId))!;
    await this.deps.progress.publishAccepted(status);
    await this.reply(delivery, jobEvent('job-accepted', status, { nodes: status.outcomes }));
    this.deps.log.info(
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

  private async requireCellFolder(): Promise<void> {
    const state = await this.deps.cacheRoot?.check();
    if (state && !state.available) throw new ReasonError('CACHE_UNAVAILABLE', state.problem);
  }

  private async purge(delivery: Delivery, record: JobRecord, job: PurgeJob): Promise<void> {
    const { store, purger, progress } = this.deps;
    const status = (await store.jobs.status(record.jobId))!;
    await progress.publishAccepted(status);
    await this.reply(delivery, jobEvent('job-accepted', status, { nodes: status.outcomes }));
    const done = new Set(status.outcomes.map((o) => o.node));
    const queue = record.nodes.filter((node) => !done.has(node));
    const worker = async () => {
      for (let node = queue.shift(); node !== undefined; node = queue.shift()) {
        this.deps.shutdown.throwIfAborted();
        let outcome: NodeOutcome;
        if (await store.jobs.isCancelled(record.jobId))
          outcome = this.outcome(node, 'cancelled', 'the job was cancelled before this node was started');
        else {
          try {
            const purged = await purger.purge(node, record.imageId, {
              forceUnpin: job.forceUnpin ?? false,
              waitMs: this.deps.purgeWaitMs,
              signal: this.deps.shutdown,
            });
            outcome =
              purged.outcome === 'deleted'
                ? {
                    ...this.outcome(
                      node,
                      'deleted',
                      purged.unpinned ? 'deleted; its pin was removed' : undefined,
                    ),
                    bytes: purged.bytes,
                  }
                : purged.outcome === 'busy'
                  ? this.outcome(node, 'busy', purged.detail)
                  : purged.outcome === 'pinned'
                    ? this.outcome(node, 'pinned', 'pinned on this node: kept (use forceUnpin)')
                    : this.outcome(node, 'absent', 'the node did not hold the image');
          } catch (error) {
            if (this.deps.shutdown.aborted) throw error;
            await this.requireCellFolder();
            const code: ReasonCode = error instanceof ReasonError ? error.code : 'INTERNAL';
            outcome = { ...this.outcome(node, 'failed', errorText(error)), reason: code };
          }
        }
        // 'absent' on a dead mount would be a lie: the purge is handed back and resumes with the nodes left.
        if (outcome.outcome === 'absent') await this.requireCellFolder();
        await progress.nodeFinished(record.jobId, outcome);
      }
    };
    await Promise.all(Array.from({ length: PURGE_CONCURRENCY }, worker));
    this.deps.log.info(
      { jobId: record.jobId, imageId: record.imageId, nodes: record.nodes.length },
      'purge job done',
    );
  }

  private async cancel(delivery: Delivery, cancel: CancelRequest): Promise<void> {
    const { store, cancels, conductorId } = this.deps;
    let answer: Pick<CancelAnswer, 'status' | 'detail'>;
    if (cancel.jobId !== undefined) {
      const status = await store.jobs.status(cancel.jobId);
      if (!status) answer = { status: 'not-found', detail: `no job ${cancel.jobId} in this cell` };
      else if (status.state === 'done')
        answer = {
          status: 'already-final',
          detail: `job ${cancel.jobId} had finished: ${status.nodesDone} nodes`,
        };
      else {
        // Local copies first: the marker's fsyncs can take long under load, a running copy would go on meanwhile.
        const aborted = cancels.abortRunning({ jobId: cancel.jobId });
        await store.jobs.cancel(cancel.jobId);
        answer = {
          status: 'cancelled',
          detail: `job ${cancel.jobId} cancelled with ${status.nodesTotal - status.nodesDone} of ${status.nodesTotal} nodes not done: their queued copies are answered CANCELLED when taken, running ones are aborted (${aborted} on ${conductorId})`,
        };
        const after = await store.jobs.status(cancel.jobId);
        if (after) await this.deps.progress.publishAccepted(after).catch(() => undefined);
      }
    } else {
      const requestId = cancel.requestId!;
      let job: { jobId: string; node: string } | undefined;
      for (const split of jobSplitsOfRequest(requestId)) {
        const record = await store.jobs.read(split.jobId).catch(() => undefined);
        if (record?.nodes.includes(split.node)) {
          job = split;
          break;
        }
      }
      const finished = job ? await store.jobs.outcome(job.jobId, job.node) : undefined;
      // A plain request's first final answer is recorded before it is sent (copy-request-handler.ts).
      const answered = job ? undefined : await store.answers.read(requestId);
      if (finished)
        answer = {
          status: 'already-final',
          detail: `request ${requestId} (job ${job!.jobId}, node ${job!.node}) had finished: ${finished.outcome}`,
        };
      else if (answered)
        answer = {
          status: 'already-final',
          detail: `request ${requestId} was answered ${answered.status}${answered.reason ? ` ${answered.reason}` : ''} at ${answered.at}: that answer stands, also for a re-send; nothing was cancelled`,
        };
      else {
        const aborted = cancels.abortRunning({ requestId });
        const fresh = await store.jobs.cancelRequest(requestId);
        answer =
          aborted > 0
            ? {
                status: 'cancelled',
                detail: `request ${requestId} was running on ${conductorId}: aborted, answered CANCELLED`,
              }
            : {
                status: 'recorded',
                detail:
                  `request ${requestId} is not running on ${conductorId}${fresh ? '' : ' (cancelled before)'}: ` +
                  'whichever conductor takes it next (queued, waiting for a retry, or running elsewhere, within a second) answers it CANCELLED; ' +
                  'if no such request exists or it was already answered, nothing else happens',
              };
      }
    }
    const body: CancelAnswer = {
      v: JOB_MESSAGE_VERSION,
      type: 'cancel-answer',
      ...(cancel.requestId ? { requestId: cancel.requestId } : {}),
      ...(cancel.jobId ? { jobId: cancel.jobId } : {}),
      ...answer,
      conductorId,
      at: new Date().toISOString(),
    };
    await publishRouted(
      this.deps.publisher,
      this.deps.topology.eventsExchange.name,
      cancelRoutingKey(body.status),
      body,
      {
        persistent: false,
      },
    );
    await this.reply(delivery, body);
    this.deps.log.info(
      { requestId: cancel.requestId, jobId: cancel.jobId, status: body.status },
      'cancel answered',
    );
  }

  private async refuse(delivery: Delivery, error: unknown, knownJobId?: string): Promise<void> {
    const reason: ReasonCode = error instanceof ReasonError ? error.code : 'INVALID_REQUEST';
    const detail = errorText(error).slice(0, 4096);
    const jobId = knownJobId ?? peekJobId(delivery.content);
    const body: JobRefusal = {
      v: JOB_MESSAGE_VERSION,
      type: 'job-refused',
      ...(jobId ? { jobId } : {}),
      reason,
      detail,
      conductorId: this.deps.conductorId,
      at: new Date().toISOString(),
    };
    if (jobId)
      await publishRouted(
        this.deps.publisher,
        this.deps.topology.eventsExchange.name,
        jobRoutingKey(jobId),
        body,
        {
          persistent: false,
        },
      );
    await this.reply(delivery, body);
    await publishToDeadLetter(this.deps.publisher, this.deps.topology, delivery.message, {
      reason,
      detail,
      attempt: 1,
    });
    delivery.ack();
    this.deps.log.warn({ jobId, reason, detail }, 'jobs-queue message refused and dead-lettered');
  }

  private async reply(delivery: Delivery, body: object): Promise<void> {
    const replyTo = delivery.properties.replyTo as string | undefined;
    if (!replyTo || replyToProblem(replyTo)) return;
    await this.deps.publisher
      .sendToQueue(replyTo, body, {
        correlationId: delivery.properties.correlationId as string | undefined,
        persistent: false,
      })
      .catch((error: unknown) =>
        this.deps.log.warn({ replyTo, err: errorText(error) }, 'jobs-queue answer not delivered to reply_to'),
      );
  }

  private outcome(node: string, outcome: NodeOutcome['outcome'], detail?: string): NodeOutcome {
    return {
      node,
      outcome,
      ...(detail ? { detail } : {}),
      conductorId: this.deps.conductorId,
      at: new Date().toISOString(),
    };
  }
}

/**
 * Every way to read a request id as `<jobId>.<node>` (both valid), the longest job id first: ids may hold
 * dots themselves, so `a.b.c` is job `a.b` on node `c` or job `a` on node `b.c`; the job records decide.
 */
export function jobSplitsOfRequest(requestId: string): Array<{ jobId: string; node: string }> {
  const splits: Array<{ jobId: string; node: string }> = [];
  for (let i = requestId.lastIndexOf('.'); i > 0; i = requestId.lastIndexOf('.', i - 1)) {
    const jobId = requestId.slice(0, i);
    const node = requestId.slice(i + 1);
    if (jobIdSchema.safeParse(jobId).success && nodeIdSchema.safeParse(node).success)
      splits.push({ jobId, node });
  }
  return splits;
}

function peekJobId(content: Buffer): string | undefined {
  const match = /"jobId"\s*:\s*"([^"\\]{1,64})"/.exec(content.subarray(0, 64 * 1024).toString('utf8'));
  return match && jobIdSchema.safeParse(match[1]).success ? match[1] : undefined;
}
