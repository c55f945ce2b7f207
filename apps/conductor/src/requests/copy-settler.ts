import {
  type CellTopology,
  type CopyResult,
  type Logger,
  errorText,
  replyToProblem,
  resultRoutingKey,
  retryQueueFor,
} from '@app/contracts';
import type { RequestAnswers } from '@app/image-store';
import {
  type Delivery,
  type Publisher,
  PublishUnroutableError,
  type RetryHeaderSigner,
  publishRouted,
  publishToDeadLetter,
  publishToRetry,
} from '@app/messaging';
import type { JobProgress } from '../jobs/job-progress';
import type { ConductorMetrics } from '../metrics/conductor-metrics';
import type { CopySettlement, JobNodeOutcome } from './copy-settlement';

export interface CopySettlerDeps {
  publisher: Publisher;
  topology: CellTopology;
  stats: ConductorMetrics;
  log: Logger;
  /** Signs retry copies, so the next conductor believes their attempt number. */
  signer: RetryHeaderSigner;
  /** A job's copy records its node's outcome before it is acked. */
  jobs?: { progress: Pick<JobProgress, 'nodeFinished'> };
  /** The first final answer of each plain request (a re-send, or a cancel after it, cannot change it). */
  answers?: Pick<RequestAnswers, 'record'>;
}

type Of<K extends CopySettlement['kind']> = Extract<CopySettlement, { kind: K }>;

/**
 * Carries out a settlement (copy-settlement.ts): the only place a copy request's end acts. Every path
 * settles the message once, and only after what it promises (the answer, the retry copy, the dead letter,
 * the job's record) was confirmed; a failure to do so throws, and the handler hands the message back.
 */
export class CopySettler {
  constructor(private readonly deps: CopySettlerDeps) {}

  async carryOut(delivery: Delivery, settlement: CopySettlement): Promise<void> {
    switch (settlement.kind) {
      case 'completed':
        return this.completed(delivery, settlement);
      case 'retry':
        return this.retry(delivery, settlement);
      case 'dead-letter':
        return this.deadLetter(delivery, settlement);
      case 'cancelled':
        return this.cancelled(delivery, settlement);
      case 'hand-back':
        return this.handBack(delivery, settlement);
      case 'dropped-with-channel':
        return this.dropped(delivery, settlement);
      case 'answer-again':
        return this.answerAgain(delivery, settlement);
    }
  }

  /** x-icc headers nobody of this cell signed: counted and logged; the delivery counts as attempt 1. */
  untrustedHeaders(delivery: Delivery, ignored: string[]): void {
    this.deps.stats.recordUntrustedHeaders();
    this.deps.log.warn(
      { messageId: delivery.properties.messageId, ignored },
      'x-icc headers not signed by a conductor of this cell: ignored (attempt 1)',
    );
  }

  private async completed(delivery: Delivery, s: Of<'completed'>): Promise<void> {
    const { request, result, coalesced } = s;
    if (coalesced) this.deps.stats.recordCoalesced();
    await this.jobNodeFinished(s.jobNode);
    await this.answer(delivery, await this.firstFinal(s));
    this.deps.stats.recordResult(
      result.status,
      undefined,
      result.status === 'completed' ? result.bytes : 0,
      s.elapsedMs,
      result.lockWaitMs,
    );
    delivery.ack();
    // redelivered: the broker handed this message out before (a conductor died or lost its channel with it).
    this.deps.log.info(
      {
        requestId: request.requestId,
        status: result.status,
        source: result.source,
        destination: request.destination,
        imageId: request.imageId,
        bytes: result.bytes,
        ...(result.resumedBytes ? { resumedBytes: result.resumedBytes } : {}),
        coalesced,
        attempt: s.attempt,
        redelivered: delivery.redelivered,
      },
      'copy request answered',
    );
  }

  private async retry(delivery: Delivery, s: Of<'retry'>): Promise<void> {
    const { publisher, topology, signer } = this.deps;
    if (s.unexpected) this.logUnexpected(s.requestId, s.unexpected);
    const tier = await publishToRetry(publisher, topology, delivery.message, {
      failedAttempt: s.attempt,
      // Uncounted: the retry copy carries this attempt's number again, through this attempt's tier.
      ...(s.counted ? {} : { failedAttempt: s.attempt - 1, tier: retryQueueFor(topology, s.attempt) }),
      reason: s.failure.code,
      detail: s.failure.detail,
      firstSeen: s.firstSeen,
      signer,
    });
    await this.answer(delivery, s.answer);
    this.deps.stats.recordRetry(s.failure.code);
    delivery.ack();
    this.deps.log.warn(
      {
        requestId: s.requestId,
        reason: s.failure.code,
        detail: s.failure.detail,
        attempt: s.attempt,
        retryInMs: tier.delayMs,
      },
      'copy failed, retry scheduled',
    );
  }

  private async deadLetter(delivery: Delivery, s: Of<'dead-letter'>): Promise<void> {
    const { failure } = s;
    if (s.unexpected) this.logUnexpected(s.requestId, s.unexpected);
    await this.jobNodeFinished(s.jobNode);
    await this.answer(delivery, await this.firstFinal(s));
    await publishToDeadLetter(this.deps.publisher, this.deps.topology, delivery.message, {
      reason: failure.code,
      detail: failure.detail,
      attempt: s.attempt,
      firstSeen: s.firstSeen,
    });
    this.deps.stats.recordResult('failed', failure.code, 0, s.elapsedMs);
    this.deps.stats.recordDeadLetter(failure.code);
    delivery.ack();
    this.deps.log.warn(
      { requestId: s.requestId, reason: failure.code, detail: failure.detail, attempt: s.attempt },
      'copy request failed and dead-lettered',
    );
  }

  /**
   * A running copy was aborted: the pipeline removed its partial file and the workflow released its locks
   * before the error reached here.
   */
  private async cancelled(delivery: Delivery, s: Of<'cancelled'>): Promise<void> {
    await this.jobNodeFinished(s.jobNode);
    await this.answer(delivery, await this.firstFinal(s));
    this.deps.stats.recordResult('failed', 'CANCELLED', 0, s.elapsedMs);
    delivery.ack();
    this.deps.log.info(
      { requestId: s.request.requestId, jobId: s.request.jobId, attempt: s.attempt },
      'copy request cancelled',
    );
  }

  private handBack(delivery: Delivery, s: Of<'hand-back'>): void {
    if (delivery.nackRequeue()) this.deps.stats.recordHandedBack();
    this.deps.log.info({ requestId: s.requestId }, 'copy handed back to the queue at shutdown');
  }

  /** The delivery is no longer ours: nothing is sent, and the consumer is told it is lost. */
  private dropped(delivery: Delivery, s: Of<'dropped-with-channel'>): void {
    delivery.markLost();
    this.deps.log.info(
      {
        requestId: s.requestId,
        messageId: delivery.properties.messageId,
        dropped: s.what,
        redelivered: delivery.redelivered,
        ...s.done,
      },
      'the delivery died with its channel: work dropped quietly (no answer, no retry); the broker redelivers it',
    );
  }

  private async answerAgain(delivery: Delivery, { earlier, deadLetter }: Of<'answer-again'>): Promise<void> {
    await this.answer(delivery, earlier);
    if (deadLetter)
      await publishToDeadLetter(this.deps.publisher, this.deps.topology, delivery.message, {
        reason: deadLetter.code,
        detail: deadLetter.detail,
      });
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

  private logUnexpected(requestId: string, { err, stack }: { err: string; stack?: string }): void {
    this.deps.log.error({ requestId, err, stack }, 'unexpected error in a copy');
  }

  /** Records the node's outcome of a job's copy before the copy's message is acked. */
  private async jobNodeFinished(node: JobNodeOutcome | undefined): Promise<void> {
    if (!node || !this.deps.jobs) return;
    await this.deps.jobs.progress.nodeFinished(node.jobId, node.outcome);
  }

  /**
   * Records a plain request's final answer before it is sent, first writer wins, and returns the answer
   * that stands: a duplicate finishing after the first (`already-present` behind `completed`) answers what
   * the first did. A job's copies have their node outcome instead. A record that cannot be written does not
   * hold the answer back (the requester waits for it); a re-send may then be worked again.
   */
  private async firstFinal({ answer: result, recordFirst }: { answer: CopyResult; recordFirst: boolean }) {
    if (!recordFirst || !this.deps.answers) return result;
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

  /** Publishes a result to the events exchange and, when asked for, to reply_to with the correlation id. */
  private async answer(delivery: Delivery, result: CopyResult): Promise<void> {
    const { publisher, topology } = this.deps;
    const correlationId = delivery.properties.correlationId as string | undefined;
    const asked = delivery.properties.replyTo as string | undefined;
    // A refused reply_to (see copy-admission.ts) gets no answer: the result still goes to the events exchange.
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
}
