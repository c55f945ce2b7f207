import {
  type Logger,
  COPY_RESULT_VERSION,
  ReasonError,
  type CellTopology,
  type CopyRequest,
  type CopyResult,
  type ReasonCode,
  REQUEST_CONTENT_TYPE,
  UNKNOWN_REQUEST_ID,
  assertDeadlineNotPassed,
  jobCopyRequestId,
  type NodeOutcome,
  parseCopyRequest,
  peekReplyInfo,
  replyToProblem,
  resultRoutingKey,
  retryQueueFor,
  errorText,
} from '@app/contracts';
import { performance } from 'node:perf_hooks';
import { newAttemptId } from '@app/locking';
import {
  type Delivery,
  type Publisher,
  PublishUnroutableError,
  type RetryHeaderSigner,
  publishRouted,
  publishToDeadLetter,
  publishToRetry,
} from '@app/messaging';
import type { JobRecords, RequestAnswers } from '@app/image-store';
import type { CopyJobResult } from '../copy/copy-job';
import type { CancelWatch } from '../jobs/cancel-watch';
import type { JobProgress } from '../jobs/job-progress';
import type { CopyCoordinator } from '../copy/copy-coordinator';
import type { ConductorMetrics } from '../metrics/conductor-metrics';
import type { CacheRootGuard } from '../cache-root/cache-root-guard';

export interface CopyRequestHandlerDeps {
  coordinator: CopyCoordinator;
  publisher: Publisher;
  topology: CellTopology;
  stats: ConductorMetrics;
  conductorId: string;
  log: Logger;
  /** Aborted when the conductor stops: copies still running are handed back to the queue. */
  shutdown: AbortSignal;
  /** Signs retry copies; only signed x-icc-attempt / x-icc-first-seen headers are believed. */
  signer: RetryHeaderSigner;
  /** Cancel markers: a cancelled request is answered CANCELLED when taken, and aborted while it runs. */
  cancels?: CancelWatch;
  /** The records of pre-cache jobs: a job's copy records its node's outcome before it is acked. */
  jobs?: { records: JobRecords; progress: JobProgress };
  /** The first final answer of each plain request: a re-send, or a cancel after it, cannot change it. */
  answers?: Pick<RequestAnswers, 'record' | 'read'>;
  /** Whether CACHE_ROOT is still the cell's: no failure is answered while it is not (CACHE_UNAVAILABLE). */
  cacheRoot?: Pick<CacheRootGuard, 'check'>;
}

type Failure = { code: ReasonCode; detail: string };

const REQUEUE_PAUSE_MS = 1_000;
/** Without a CancelWatch (unit specs of other parts): nothing is ever cancelled. */
const NOT_WATCHED = { signal: new AbortController().signal, done: () => undefined };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One request message, from delivery to ack. Valid requests are copied and answered; retryable failures
 * go to the delayed retry path; permanent ones are answered as failed and dead-lettered with the reason;
 * work interrupted by shutdown is handed back to the queue. Every path ends with the message settled
 * exactly once, and only after what it promises was confirmed by the broker.
 */
export class CopyRequestHandler {
  constructor(private readonly deps: CopyRequestHandlerDeps) {}

  /** Never throws: a broker failure while answering hands the message back (the copy is idempotent). */
  async handle(delivery: Delivery): Promise<void> {
    try {
      await this.process(delivery);
    } catch (error) {
      // The publish failed because the connection died under it (a partition noticed only now): the
      // delivery is gone with its channel, and the broker redelivers it; nothing to hand back.
      if (
        !delivery.channelOpen &&
        (await this.droppedWithItsChannel(delivery, undefined, `publish failed: ${errorText(error)}`))
      )
        return;
      this.deps.log.warn(
        { err: errorText(error), messageId: delivery.properties.messageId },
        'could not answer a request; handing it back',
      );
      // A short pause so a broker that refuses publishes does not turn this into a hot loop.
      if (!this.deps.shutdown.aborted) await sleep(REQUEUE_PAUSE_MS);
      if (delivery.nackRequeue()) this.deps.stats.recordHandedBack();
    }
  }

  private async process(delivery: Delivery): Promise<void> {
    const started = performance.now();
    // Headers are requester input: attempt and first-seen count only when a conductor of this cell signed them.
    const retryState = this.deps.signer.read(delivery.message, this.deps.topology.maxAttempts);
    const firstSeen = retryState.firstSeen ?? new Date().toISOString();
    const attempt = retryState.attempt;
    if (retryState.ignored.length > 0) {
      this.deps.stats.recordUntrustedHeaders();
      this.deps.log.warn(
        { messageId: delivery.properties.messageId, ignored: retryState.ignored },
        'x-icc headers not signed by a conductor of this cell: ignored (attempt 1)',
      );
    }
    let request: CopyRequest | undefined;
    try {
      checkContentType(delivery.properties.contentType as string | undefined);
      checkReplyTo(delivery.properties.replyTo as string | undefined);
      request = parseCopyRequest(delivery.content);
      await this.checkJob(request);
      assertDeadlineNotPassed(request);
    } catch (error) {
      const failure = asFailure(error);
      // A valid message refused for what CACHE_ROOT lacks (its job's record): only believed if it is the cell's.
      const unavailable =
        request && failure.code === 'INVALID_REQUEST' ? await this.cacheRootUnavailable(failure) : undefined;
      // Checked after the folder check, which can take long on a cut mount (see the failure path below).
      if (await this.droppedWithItsChannel(delivery, undefined, 'refusal')) return;
      if (request && unavailable)
        return this.retry(delivery, request, unavailable, attempt, firstSeen, this.uncounted(attempt));
      await this.failPermanently(delivery, undefined, failure, attempt, firstSeen, started);
      return;
    }
    const log = this.deps.log;
    let outcome: { result: CopyJobResult; coalesced: boolean } | undefined;
    let earlier: CopyResult | undefined;
    // Watched before the first look at the markers: a cancel written at any moment is seen (cancel-watch.ts).
    const cancel = this.deps.cancels?.watch(request) ?? NOT_WATCHED;
    try {
      // A request id's first final answer stands: a re-send is answered with it, whatever happened since.
      // A record that cannot be read now is looked for again when the answer is recorded (firstFinal).
      earlier =
        request.jobId === undefined
          ? await this.deps.answers?.read(request.requestId).catch(() => undefined)
          : undefined;
      if (!earlier) {
        if (await this.deps.cancels?.isCancelled(request))
          throw new ReasonError('CANCELLED', `request ${request.requestId} was cancelled before it started`);
        const attemptId = `${request.requestId.slice(0, 40).replace(/\./g, '_')}-${newAttemptId()}`;
        const signal = AbortSignal.any([this.deps.shutdown, cancel.signal]);
        // The checks above await: a shutdown or cancel may have begun meanwhile; start no copy then.
        if (signal.aborted) throw signal.reason;
        outcome = await this.deps.coordinator.run(request, request.requestId, attemptId, signal);
      }
    } catch (caught) {
      // An aborted copy throws whatever the abort looked like where it stopped: the cancel is the cause.
      const error = cancel.signal.aborted && !this.deps.shutdown.aborted ? cancel.signal.reason : caught;
      if (isCancelled(error)) {
        await this.answerCancelled(delivery, request, asFailure(error), attempt, firstSeen);
        return;
      }
      if (this.deps.shutdown.aborted) {
        // Not a failure to report: another conductor (or this one, restarted) will finish it.
        if (delivery.nackRequeue()) this.deps.stats.recordHandedBack();
        log.info({ requestId: request.requestId }, 'copy handed back to the queue at shutdown');
        return;
      }
      const failure = asFailure(error);
      const unavailable = await this.cacheRootUnavailable(failure);
      // After the folder check: on a cut link the mount and the broker go together, and that check can take
      // long enough for the conductor to notice its connection is gone. A retry copy published then (on
      // the new connection) would run the request a second time beside its redelivery.
      if (await this.droppedWithItsChannel(delivery, request.requestId, `failure ${failure.code}`)) return;
      if (unavailable) {
        await this.retry(delivery, request, unavailable, attempt, firstSeen, this.uncounted(attempt));
        return;
      }
      if (failure.code === 'INTERNAL')
        log.error(
          { requestId: request.requestId, err: errorText(error), stack: (error as Error)?.stack },
          'unexpected error in a copy',
        );
      const retryable = new ReasonError(failure.code, failure.detail).retryable;
      if (retryable && attempt < this.deps.topology.maxAttempts)
        await this.retry(delivery, request, failure, attempt, firstSeen);
      else {
        const final: Failure = retryable
          ? {
              code: 'RETRIES_EXHAUSTED',
              detail: `after ${attempt} attempts; last: ${failure.code}: ${failure.detail}`,
            }
          : failure;
        await this.failPermanently(delivery, request, final, attempt, firstSeen, started);
      }
      return;
    } finally {
      cancel.done();
    }
    if (earlier) return this.answerAgain(delivery, earlier);
    const { result, coalesced } = outcome!;
    const dropped = await this.droppedWithItsChannel(delivery, request.requestId, `result ${result.status}`, {
      status: result.status,
      imageId: request.imageId,
      destination: request.destination,
      coalesced,
    });
    if (dropped) return;
    if (coalesced) this.deps.stats.recordCoalesced();
    await this.jobNodeFinished(request, {
      outcome: result.status,
      ...(result.status === 'completed' ? { bytes: result.bytes } : {}),
    });
    await this.answer(
      delivery,
      await this.firstFinal(request, this.successResult(request, result, attempt, firstSeen)),
    );
    this.deps.stats.recordResult(
      result.status,
      undefined,
      result.status === 'completed' ? result.bytes : 0,
      elapsedSince(firstSeen),
      result.lockWaitMs,
    );
    delivery.ack();
    // redelivered: the broker handed this message out before (a conductor died or lost its channel with it).
    log.info(
      {
        requestId: request.requestId,
        status: result.status,
        source: result.source,
        destination: request.destination,
        imageId: request.imageId,
        bytes: result.bytes,
        ...(result.resumedBytes ? { resumedBytes: result.resumedBytes } : {}),
        coalesced,
        attempt,
        redelivered: delivery.redelivered,
      },
      'copy request answered',
    );
  }

  /**
   * A delivery whose channel died (its connection dropped during a partition, or the broker closed the
   * channel) is no longer ours: the broker hands the message to another consumer, which may have answered
   * it long ago. Late work is dropped quietly: a late result would contradict a final answer, and a retry
   * copy would run the request a second time beside its redelivery.
   */
  private async droppedWithItsChannel(
    delivery: Delivery,
    requestId: string | undefined,
    what: string,
    /** What the dropped work did, for whoever counts copies from the log (a finished copy stays published). */
    done: object = {},
  ): Promise<boolean> {
    // A process resumed after a pause runs its overdue timers (a lock watchdog ending the copy) before it
    // reads its sockets: one turn of the event loop lets a broker's close that is waiting there land first.
    if (delivery.channelOpen) await new Promise((resolve) => setImmediate(resolve));
    if (delivery.channelOpen) return false;
    delivery.markLost();
    this.deps.log.info(
      {
        requestId,
        messageId: delivery.properties.messageId,
        dropped: what,
        redelivered: delivery.redelivered,
        ...done,
      },
      'the delivery died with its channel: work dropped quietly (no answer, no retry); the broker redelivers it',
    );
    return true;
  }

  /**
   * On a folder that is not the cell's (a dead network mount) every node and image looks absent, and I/O
   * fails: no failure seen there is an answer. CACHE_UNAVAILABLE instead, or undefined when the folder is
   * the cell's (then the failure stands). A request's deadline is a fact whatever the folder shows.
   */
  private async cacheRootUnavailable(failure: Failure): Promise<Failure | undefined> {
    if (!this.deps.cacheRoot || failure.code === 'DEADLINE_EXCEEDED') return undefined;
    const state = await this.deps.cacheRoot.check();
    if (state.available) return undefined;
    return {
      code: 'CACHE_UNAVAILABLE',
      detail: `${state.problem}; seen there: ${failure.code}: ${failure.detail}`,
    };
  }

  /**
   * Through the retry path without counting the attempt: an outage of this conductor's mount says nothing
   * about the request, so it must not use up its attempts (RETRIES_EXHAUSTED would be final). The retry
   * copy may be taken by a conductor whose mount is fine.
   */
  private uncounted(attempt: number) {
    return { failedAttempt: attempt - 1, tier: retryQueueFor(this.deps.topology, attempt) };
  }

  private async retry(
    delivery: Delivery,
    request: CopyRequest,
    failure: Failure,
    attempt: number,
    firstSeen: string,
    uncounted?: ReturnType<CopyRequestHandler['uncounted']>,
  ): Promise<void> {
    const tier = await publishToRetry(this.deps.publisher, this.deps.topology, delivery.message, {
      failedAttempt: attempt,
      ...uncounted,
      reason: failure.code,
      detail: failure.detail,
      firstSeen,
      signer: this.deps.signer,
    });
    // Tell waiting requesters this attempt failed and another follows (retryable: true is not final).
    await this.answer(
      delivery,
      this.failedResult(request, request.requestId, failure, attempt, firstSeen, true),
    );
    this.deps.stats.recordRetry(failure.code);
    delivery.ack();
    this.deps.log.warn(
      {
        requestId: request.requestId,
        reason: failure.code,
        detail: failure.detail,
        attempt,
        retryInMs: tier.delayMs,
      },
      'copy failed, retry scheduled',
    );
  }

  private async failPermanently(
    delivery: Delivery,
    request: CopyRequest | undefined,
    failure: Failure,
    attempt: number,
    firstSeen: string,
    started: number,
  ): Promise<void> {
    const peeked = request ?? peekReplyInfo(delivery.content, delivery.properties.messageId);
    const requestId = peeked.requestId ?? UNKNOWN_REQUEST_ID;
    if (request)
      await this.jobNodeFinished(request, {
        outcome: 'failed',
        reason: failure.code,
        detail: failure.detail,
      });
    await this.answer(
      delivery,
      await this.firstFinal(
        request,
        this.failedResult(peeked, requestId, failure, attempt, firstSeen, false),
      ),
    );
    await publishToDeadLetter(this.deps.publisher, this.deps.topology, delivery.message, {
      reason: failure.code,
      detail: failure.detail,
      attempt,
      firstSeen,
    });
    this.deps.stats.recordResult(
      'failed',
      failure.code,
      0,
      request ? elapsedSince(firstSeen) : performance.now() - started,
    );
    this.deps.stats.recordDeadLetter(failure.code);
    delivery.ack();
    this.deps.log.warn(
      { requestId, reason: failure.code, detail: failure.detail, attempt },
      'copy request failed and dead-lettered',
    );
  }

  /**
   * A cancelled request is answered (final, not retried) and acked; it is not dead-lettered, as nothing
   * is wrong with it. A running copy was aborted: the pipeline removed its partial file and the workflow
   * released its locks before the error reached here.
   */
  private async answerCancelled(
    delivery: Delivery,
    request: CopyRequest,
    failure: Failure,
    attempt: number,
    firstSeen: string,
  ): Promise<void> {
    await this.jobNodeFinished(request, {
      outcome: 'cancelled',
      reason: 'CANCELLED',
      detail: failure.detail,
    });
    await this.answer(
      delivery,
      await this.firstFinal(
        request,
        this.failedResult(request, request.requestId, failure, attempt, firstSeen, false),
      ),
    );
    this.deps.stats.recordResult('failed', 'CANCELLED', 0, elapsedSince(firstSeen));
    delivery.ack();
    this.deps.log.info(
      { requestId: request.requestId, jobId: request.jobId, attempt },
      'copy request cancelled',
    );
  }

  /**
   * Records a plain request's final answer before it is sent, first writer wins, and returns the answer
   * that stands: a duplicate finishing after the first (`already-present` behind `completed`) answers what
   * the first did. A job's copies have their node outcome instead. A record that cannot be written does not
   * hold the answer back (the requester waits for it); a re-send may then be worked again.
   */
  private async firstFinal(request: CopyRequest | undefined, result: CopyResult): Promise<CopyResult> {
    if (!request || request.jobId !== undefined || !this.deps.answers) return result;
    try {
      const { answer, first } = await this.deps.answers.record(result);
      if (!first)
        this.deps.log.info(
          { requestId: result.requestId, status: result.status, first: answer.status },
          'a duplicate finished after the first final answer: answered with that one',
        );
      return answer;
    } catch (error) {
      this.deps.log.warn(
        { requestId: result.requestId, err: errorText(error) },
        'could not record the final answer: answered without a record',
      );
      return result;
    }
  }

  /** A re-send of a request that has its final answer: the same answer again, and the message acked. */
  private async answerAgain(delivery: Delivery, earlier: CopyResult): Promise<void> {
    await this.answer(delivery, earlier);
    delivery.ack();
    this.deps.log.info(
      {
        requestId: earlier.requestId,
        status: earlier.status,
        reason: earlier.reason,
        answeredAt: earlier.at,
      },
      'request sent again after its final answer: answered with that answer',
    );
  }

  /**
   * A request carrying a job id is one of that job's copies: its id must be `<jobId>.<destination>` and
   * the job must list the destination, so no requester can write outcomes into another's job.
   */
  private async checkJob(request: CopyRequest): Promise<void> {
    if (request.jobId === undefined) return;
    if (request.requestId !== jobCopyRequestId(request.jobId, request.destination))
      throw new ReasonError(
        'INVALID_REQUEST',
        `requestId: a copy of job ${request.jobId} must be named ${jobCopyRequestId(request.jobId, request.destination)}`,
      );
    const record = await this.deps.jobs?.records.read(request.jobId);
    if (!record || record.type !== 'precache' || !record.nodes.includes(request.destination))
      throw new ReasonError(
        'INVALID_REQUEST',
        `jobId: no pre-cache job ${request.jobId} with node ${request.destination} in this cell`,
      );
  }

  /** Records the node's outcome of a job's copy before the copy's message is acked. */
  private async jobNodeFinished(
    request: CopyRequest,
    outcome: Pick<NodeOutcome, 'outcome' | 'reason' | 'detail' | 'bytes'>,
  ): Promise<void> {
    if (request.jobId === undefined || !this.deps.jobs) return;
    await this.deps.jobs.progress.nodeFinished(request.jobId, {
      node: request.destination,
      ...outcome,
      ...(outcome.detail ? { detail: outcome.detail.slice(0, 4096) } : {}),
      conductorId: this.deps.conductorId,
      at: new Date().toISOString(),
    });
  }

  /** Publishes a result to the events exchange and, when asked for, to reply_to with the correlation id. */
  private async answer(delivery: Delivery, result: CopyResult): Promise<void> {
    const { publisher, topology } = this.deps;
    const correlationId = delivery.properties.correlationId as string | undefined;
    const asked = delivery.properties.replyTo as string | undefined;
    // A refused reply_to (see checkReplyTo) gets no answer: the result still goes to the events exchange.
    const replyTo = asked && !replyToProblem(asked) ? asked : undefined;
    // The events exchange must exist and confirm (a missing one is declared again, see publishRouted); a
    // result no queue is bound for is not lost for anyone (nobody listens), so it is not mandatory there.
    const sends = [
      publishRouted(publisher, topology.eventsExchange.name, resultRoutingKey(result.status), result, {
        messageId: result.requestId,
        correlationId,
      }),
    ];
    if (replyTo) sends.push(this.reply(replyTo, result, correlationId));
    const settled = await Promise.allSettled(sends);
    for (const outcome of settled) if (outcome.status === 'rejected') throw outcome.reason;
  }

  /**
   * A reply queue may be gone (the requester left): mandatory only to tell that (basic.return) apart from
   * our own failure, which hands the request back instead, e.g. our channel closed by another publish's
   * 404; the same channel failing twice does.
   */
  private async reply(replyTo: string, result: CopyResult, correlationId: string | undefined): Promise<void> {
    const send = () =>
      this.deps.publisher.sendToQueue(replyTo, result, {
        messageId: result.requestId,
        correlationId,
        persistent: false,
        mandatory: true,
      });
    try {
      await send().catch((error: unknown) =>
        error instanceof PublishUnroutableError && error.returned ? Promise.reject(error) : send(),
      );
    } catch (error) {
      if (!(error instanceof PublishUnroutableError && error.returned)) throw error;
      this.deps.log.warn(
        { requestId: result.requestId, replyTo, err: errorText(error) },
        'reply not delivered: the reply queue is gone',
      );
    }
  }

  private successResult(
    request: CopyRequest,
    result: CopyJobResult,
    attempt: number,
    firstSeen: string,
  ): CopyResult {
    return {
      v: COPY_RESULT_VERSION,
      type: 'result',
      requestId: request.requestId,
      imageId: request.imageId,
      source: result.source,
      destination: request.destination,
      status: result.status,
      bytes: result.bytes,
      sha256: result.sha256,
      attempt,
      durations: {
        totalMs: elapsedSince(firstSeen),
        lockWaitMs: result.lockWaitMs,
        copyMs: result.copyMs,
        verifyMs: result.verifyMs,
      },
      conductorId: this.deps.conductorId,
      at: new Date().toISOString(),
    };
  }

  private failedResult(
    ids: { imageId?: string; source?: string; destination?: string },
    requestId: string,
    failure: Failure,
    attempt: number,
    firstSeen: string,
    retryable: boolean,
  ): CopyResult {
    return {
      v: COPY_RESULT_VERSION,
      type: 'result',
      requestId,
      imageId: ids.imageId,
      source: ids.source,
      destination: ids.destination,
      status: 'failed',
      reason: failure.code,
      detail: failure.detail.slice(0, 4096),
      retryable,
      attempt,
      durations: { totalMs: elapsedSince(firstSeen) },
      conductorId: this.deps.conductorId,
      at: new Date().toISOString(),
    };
  }
}

function checkContentType(contentType: string | undefined): void {
  // Absent is accepted (many clients omit it); anything else must say JSON.
  if (contentType !== undefined && contentType.split(';')[0]!.trim().toLowerCase() !== REQUEST_CONTENT_TYPE)
    throw new ReasonError(
      'INVALID_REQUEST',
      `content_type: must be ${REQUEST_CONTENT_TYPE} (got ${JSON.stringify(contentType.slice(0, 100))})`,
    );
}

function checkReplyTo(replyTo: string | undefined): void {
  const problem = replyTo === undefined ? undefined : replyToProblem(replyTo);
  if (problem) throw new ReasonError('INVALID_REQUEST', problem);
}

function isCancelled(error: unknown): boolean {
  return error instanceof ReasonError && error.code === 'CANCELLED';
}

function asFailure(error: unknown): Failure {
  if (error instanceof ReasonError) return { code: error.code, detail: error.message };
  return { code: 'INTERNAL', detail: errorText(error) };
}

function elapsedSince(iso: string): number {
  return Math.max(0, Date.now() - Date.parse(iso));
}
