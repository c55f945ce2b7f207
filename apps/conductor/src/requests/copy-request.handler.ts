import { performance } from 'node:perf_hooks';
import {
  COPY_RESULT_VERSION,
  ConductorError,
  type CellTopology,
  type CopyRequest,
  type CopyResult,
  type ReasonCode,
  REQUEST_CONTENT_TYPE,
  UNKNOWN_REQUEST_ID,
  assertDeadlineNotPassed,
  parseCopyRequest,
  peekReplyInfo,
  replyToProblem,
  resultRoutingKey,
} from '@app/contracts';
import { newAttemptId } from '@app/locking';
import {
  type Delivery,
  type MessagingLogger,
  type Publisher,
  PublishUnroutableError,
  type RetryHeaderSigner,
  publishRouted,
  publishToDeadLetter,
  publishToRetry,
} from '@app/messaging';
import type { CopyJobResult } from '../copy/copy-job';
import type { CopyCoordinator } from '../copy/copy-coordinator';
import type { ConductorStats } from '../status/conductor-stats';

export interface CopyRequestHandlerDeps {
  coordinator: CopyCoordinator;
  publisher: Publisher;
  topology: CellTopology;
  stats: ConductorStats;
  conductorId: string;
  log: MessagingLogger;
  /** Aborted when the conductor stops: copies still running are handed back to the queue. */
  shutdown: AbortSignal;
  /** Signs retry copies; only signed x-icc-attempt / x-icc-first-seen headers are believed. */
  signer: RetryHeaderSigner;
}

type Failure = { code: ReasonCode; detail: string };

const REQUEUE_PAUSE_MS = 1_000;
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
    let request: CopyRequest;
    try {
      checkContentType(delivery.properties.contentType as string | undefined);
      checkReplyTo(delivery.properties.replyTo as string | undefined);
      request = parseCopyRequest(delivery.content);
      assertDeadlineNotPassed(request);
    } catch (error) {
      await this.failPermanently(delivery, undefined, asFailure(error), attempt, firstSeen, started);
      return;
    }
    const log = this.deps.log;
    let outcome: { result: CopyJobResult; coalesced: boolean };
    try {
      const attemptId = `${request.requestId.slice(0, 40).replace(/\./g, '_')}-${newAttemptId()}`;
      outcome = await this.deps.coordinator.run(request, request.requestId, attemptId, this.deps.shutdown);
    } catch (error) {
      if (this.deps.shutdown.aborted) {
        // Not a failure to report: another conductor (or this one, restarted) will finish it.
        if (delivery.nackRequeue()) this.deps.stats.recordHandedBack();
        log.info({ requestId: request.requestId }, 'copy handed back to the queue at shutdown');
        return;
      }
      const failure = asFailure(error);
      if (failure.code === 'INTERNAL')
        log.error(
          { requestId: request.requestId, err: errorText(error), stack: (error as Error)?.stack },
          'unexpected error in a copy',
        );
      const retryable = new ConductorError(failure.code, failure.detail).retryable;
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
    }
    const { result, coalesced } = outcome;
    if (coalesced) this.deps.stats.recordCoalesced();
    await this.answer(delivery, this.successResult(request, result, attempt, firstSeen));
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

  private async retry(
    delivery: Delivery,
    request: CopyRequest,
    failure: Failure,
    attempt: number,
    firstSeen: string,
  ): Promise<void> {
    const tier = await publishToRetry(this.deps.publisher, this.deps.topology, delivery.message, {
      failedAttempt: attempt,
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
    await this.answer(delivery, this.failedResult(peeked, requestId, failure, attempt, firstSeen, false));
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
    throw new ConductorError(
      'INVALID_REQUEST',
      `content_type: must be ${REQUEST_CONTENT_TYPE} (got ${JSON.stringify(contentType.slice(0, 100))})`,
    );
}

function checkReplyTo(replyTo: string | undefined): void {
  const problem = replyTo === undefined ? undefined : replyToProblem(replyTo);
  if (problem) throw new ConductorError('INVALID_REQUEST', problem);
}

function asFailure(error: unknown): Failure {
  if (error instanceof ConductorError) return { code: error.code, detail: error.message };
  return { code: 'INTERNAL', detail: errorText(error) };
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function elapsedSince(iso: string): number {
  return Math.max(0, Date.now() - Date.parse(iso));
}
