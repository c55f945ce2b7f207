import {
  type CopyRequest,
  type CopyResult,
  type NodeOutcome,
  UNKNOWN_REQUEST_ID,
  isRetryable,
} from '@app/contracts';
import type { CopyJobResult } from '../copy/copy-job';
import type { CacheRootState } from '../cache-root/cache-root-guard';
import type { Admitted, Refused } from './copy-admission';
import { type AnswerContext, type Failure, elapsedSince, failedResult, successResult } from './copy-results';

/** An unexpected error (a bug, INTERNAL): logged with its stack when the failure is judged. */
export interface Unexpected {
  err: string;
  stack?: string;
}

/** What became of an admitted request's copy. */
export type CopyOutcome =
  /** The request id has its first final answer already (a re-send): nothing was copied. */
  | { kind: 'answered-before'; earlier: CopyResult }
  | { kind: 'copied'; result: CopyJobResult; coalesced: boolean }
  /** Refused before it started (cancelled), or failed while it ran; CANCELLED when its cancel aborted it. */
  | { kind: 'failed'; failure: Failure; unexpected?: Unexpected };

/** One delivery as the settlement sees it: refused at admission, or admitted and its copy's outcome. */
export type Handled = { kind: 'refused'; refusal: Refused } | (CopyOutcome & { admitted: Admitted });

/** The facts besides the outcome; the handler looks only at what `lookups()` names. */
export interface SettleFacts {
  maxAttempts: number;
  /** The conductor is stopping. */
  shuttingDown: boolean;
  /** What the cache-root guard answered, if it was looked at (and there is one). */
  cacheRoot?: CacheRootState;
  /** Whether the delivery's channel is still open (believed only where `lookups()` asks for it). */
  channelOpen: boolean;
  conductorId: string;
  now: Date;
  /** How long this conductor has had the delivery: a refusal's duration in the metrics. */
  handledMs: number;
}

/** A job's node outcome, recorded before the copy's message is acked. */
export interface JobNodeOutcome {
  jobId: string;
  outcome: NodeOutcome;
}

/** What a copy's ending says of its job's node. */
type NodePart = Pick<NodeOutcome, 'outcome' | 'reason' | 'detail' | 'bytes'>;

/** What a final answer carries besides its kind: the answer, its records and its duration. */
interface FinalAnswer {
  answer: CopyResult;
  /** A plain request's final answer is recorded (first writer wins) and the one that stands is sent. */
  recordFirst: boolean;
  /** A job's copy records its node's outcome first. */
  jobNode?: JobNodeOutcome;
  /** For the metrics: since first seen, or (a refusal) since this conductor took the delivery. */
  elapsedMs: number;
}

/** How one delivery ends; copy-settler.ts carries it out. */
export type CopySettlement =
  /** Copied, or found already present: answered, acked. */
  | ({
      kind: 'completed';
      request: CopyRequest;
      result: CopyJobResult;
      coalesced: boolean;
      attempt: number;
    } & FinalAnswer)
  /** Through the delayed-retry path with a non-final answer; uncounted when the mount failed, not the request. */
  | {
      kind: 'retry';
      requestId: string;
      failure: Failure;
      attempt: number;
      firstSeen: string;
      counted: boolean;
      answer: CopyResult;
      unexpected?: Unexpected;
    }
  /** Answered as failed (final) and dead-lettered with the reason. */
  | ({
      kind: 'dead-letter';
      requestId: string;
      failure: Failure;
      attempt: number;
      firstSeen: string;
      unexpected?: Unexpected;
    } & FinalAnswer)
  /** Answered CANCELLED (final), acked, not dead-lettered: nothing is wrong with the request. */
  | ({ kind: 'cancelled'; request: CopyRequest; attempt: number } & FinalAnswer)
  /** Stopped by the shutdown: back to the queue unanswered, for another conductor (or this one restarted). */
  | { kind: 'hand-back'; requestId: string }
  /** The delivery died with its channel: no answer, no retry; the broker redelivers it. */
  | { kind: 'dropped-with-channel'; requestId?: string; what: string; done?: Record<string, unknown> }
  /**
   * A re-send of a request that has its final answer: that answer again, acked. An answer that was a
   * dead-lettered failure is dead-lettered again (`deadLetter`): the first handling may have recorded and
   * tried to send it, then lost its channel before its dead letter went out, and at-least-once allows the
   * duplicate.
   */
  | { kind: 'answer-again'; earlier: CopyResult; deadLetter?: Failure };

/**
 * What must be looked at before settling. The cache-root guard: for a failure that might only be the
 * mount's (not for a cancel, the shutdown, or a deadline, which is a fact whatever the folder shows). The
 * channel: before any answer or retry of a judged outcome. A cancel, the shutdown and a re-send are
 * settled without either.
 */
export function lookups(handled: Handled, shuttingDown: boolean): { cacheRoot: boolean; channel: boolean } {
  switch (handled.kind) {
    case 'refused': {
      // A valid message refused for what CACHE_ROOT lacks (its job's record) or could not read: only
      // believed if it is the cell's.
      const { request, failure } = handled.refusal;
      return {
        cacheRoot: request !== undefined && (failure.code === 'INVALID_REQUEST' || isRetryable(failure.code)),
        channel: true,
      };
    }
    case 'answered-before':
      return { cacheRoot: false, channel: false };
    case 'copied':
      return { cacheRoot: false, channel: true };
    case 'failed': {
      const judged = handled.failure.code !== 'CANCELLED' && !shuttingDown;
      return { cacheRoot: judged && handled.failure.code !== 'DEADLINE_EXCEEDED', channel: judged };
    }
  }
}

/**
 * The settlement table: how one delivery ends, from its outcome and the facts. Pure (the clock comes in
 * as `facts.now`); every row is in copy-settlement.spec.ts.
 */
export function settle(handled: Handled, facts: SettleFacts): CopySettlement {
  const looks = lookups(handled, facts.shuttingDown);
  const judged: Judged = {
    ...facts,
    // A delivery whose channel died is no longer ours: another consumer may have answered it long ago. A
    // late result would contradict a final answer, and a retry copy would run the request a second time.
    dropped: looks.channel && !facts.channelOpen,
    mountDead: looks.cacheRoot ? deadMount(facts.cacheRoot) : undefined,
  };
  switch (handled.kind) {
    case 'refused':
      return settleRefusal(handled.refusal, judged);
    case 'answered-before':
      return answerAgain(handled.earlier);
    case 'copied':
      return settleCopied(handled.admitted, handled.result, handled.coalesced, judged);
    case 'failed':
      return settleFailure(handled.admitted, handled.failure, handled.unexpected, judged);
  }
}

/** The facts as they bear on this delivery: its channel gone, the mount's problem when it counts. */
type Judged = SettleFacts & { dropped: boolean; mountDead?: string };

function settleRefusal(refusal: Refused, facts: Judged): CopySettlement {
  if (facts.dropped) return { kind: 'dropped-with-channel', what: 'refusal' };
  // A request whose job record could not be read (an I/O error, not a verdict): tried again like a
  // failed copy, and on exhaustion its node gets an outcome, so the job still ends.
  if (refusal.request && isRetryable(refusal.failure.code))
    return settleFailure(
      { ...refusal, kind: 'admitted', request: refusal.request },
      refusal.failure,
      undefined,
      facts,
    );
  const at = answerContext(refusal, facts);
  if (refusal.request && facts.mountDead)
    return retry(refusal.request, unavailable(facts.mountDead, refusal.failure), false, at);
  // Not a request (or not one to answer by it): addressed by what could be read of the message.
  const { replyInfo, failure } = refusal;
  const requestId = replyInfo.requestId ?? UNKNOWN_REQUEST_ID;
  return {
    kind: 'dead-letter',
    requestId,
    failure,
    attempt: refusal.attempt,
    firstSeen: refusal.firstSeen,
    answer: failedResult(replyInfo, requestId, failure, false, at),
    recordFirst: false,
    elapsedMs: facts.handledMs,
  };
}

function settleCopied(
  admitted: Admitted,
  result: CopyJobResult,
  coalesced: boolean,
  facts: Judged,
): CopySettlement {
  const { request } = admitted;
  if (facts.dropped)
    return {
      kind: 'dropped-with-channel',
      requestId: request.requestId,
      what: `result ${result.status}`,
      // What the dropped work did, for whoever counts copies from the log (a finished copy stays published).
      done: { status: result.status, imageId: request.imageId, destination: request.destination, coalesced },
    };
  const at = answerContext(admitted, facts);
  return {
    kind: 'completed',
    request,
    result,
    coalesced,
    attempt: at.attempt,
    ...finalAnswer(request, successResult(request, result, at), at, {
      outcome: result.status,
      ...(result.status === 'completed' ? { bytes: result.bytes } : {}),
    }),
  };
}

function settleFailure(
  admitted: Admitted,
  failure: Failure,
  unexpected: Unexpected | undefined,
  facts: Judged,
): CopySettlement {
  const { request } = admitted;
  const at = answerContext(admitted, facts);
  if (failure.code === 'CANCELLED')
    return {
      kind: 'cancelled',
      request,
      attempt: at.attempt,
      ...finalAnswer(request, failedResult(request, request.requestId, failure, false, at), at, {
        outcome: 'cancelled',
        reason: 'CANCELLED',
        detail: failure.detail,
      }),
    };
  // Not a failure to report: another conductor (or this one, restarted) will finish it.
  if (facts.shuttingDown) return { kind: 'hand-back', requestId: request.requestId };
  if (facts.dropped)
    return { kind: 'dropped-with-channel', requestId: request.requestId, what: `failure ${failure.code}` };
  if (facts.mountDead) return retry(request, unavailable(facts.mountDead, failure), false, at);
  // The copy itself found the folder not the cell's (a miss it could not prove): the mount's failure, not
  // the request's, even if the mount is back by now.
  if (failure.code === 'CACHE_UNAVAILABLE') return retry(request, failure, false, at);
  const retryable = isRetryable(failure.code);
  if (retryable && at.attempt < facts.maxAttempts)
    return { ...retry(request, failure, true, at), ...(unexpected ? { unexpected } : {}) };
  const final: Failure = retryable
    ? {
        code: 'RETRIES_EXHAUSTED',
        detail: `after ${at.attempt} attempts; last: ${failure.code}: ${failure.detail}`,
      }
    : failure;
  return {
    kind: 'dead-letter',
    requestId: request.requestId,
    failure: final,
    attempt: at.attempt,
    firstSeen: at.firstSeen,
    ...(unexpected ? { unexpected } : {}),
    ...finalAnswer(request, failedResult(request, request.requestId, final, false, at), at, {
      outcome: 'failed',
      reason: final.code,
      detail: final.detail,
    }),
  };
}

/** A final answer of an admitted request: recorded first if plain, its node's outcome first if a job's. */
function finalAnswer(
  request: CopyRequest,
  answer: CopyResult,
  at: AnswerContext,
  node: NodePart,
): FinalAnswer {
  return {
    answer,
    recordFirst: request.jobId === undefined,
    ...(request.jobId !== undefined ? { jobNode: jobNode(request, request.jobId, node, at) } : {}),
    elapsedMs: elapsedSince(at.firstSeen, at.now),
  };
}

function answerContext(
  standing: { attempt: number; firstSeen: string },
  facts: Pick<SettleFacts, 'conductorId' | 'now'>,
): AnswerContext {
  return {
    attempt: standing.attempt,
    firstSeen: standing.firstSeen,
    conductorId: facts.conductorId,
    now: facts.now,
  };
}

/**
 * Through the retry path. Uncounted when the mount failed: an outage of this conductor's mount says nothing
 * about the request, so it must not use up its attempts (RETRIES_EXHAUSTED would be final); the retry
 * copy may be taken by a conductor whose mount is fine.
 */
function retry(
  request: CopyRequest,
  failure: Failure,
  counted: boolean,
  at: AnswerContext,
): Extract<CopySettlement, { kind: 'retry' }> {
  return {
    kind: 'retry',
    requestId: request.requestId,
    failure,
    attempt: at.attempt,
    firstSeen: at.firstSeen,
    counted,
    // Tells waiting requesters this attempt failed and another follows (retryable: true is not final).
    answer: failedResult(request, request.requestId, failure, true, at),
  };
}

/** The guard's problem when CACHE_ROOT is not the cell's folder (a dead network mount). */
/** Every final failure but a cancel was dead-lettered (settleFailure, settleRefusal). */
function answerAgain(earlier: CopyResult): CopySettlement {
  if (earlier.status !== 'failed' || earlier.reason === undefined || earlier.reason === 'CANCELLED')
    return { kind: 'answer-again', earlier };
  return {
    kind: 'answer-again',
    earlier,
    deadLetter: { code: earlier.reason, detail: earlier.detail ?? '' },
  };
}

function deadMount(state: CacheRootState | undefined): string | undefined {
  return state && !state.available ? state.problem : undefined;
}

/** On a folder that is not the cell's every node and image looks absent: no failure seen there is an answer. */
function unavailable(problem: string, seen: Failure): Failure {
  return { code: 'CACHE_UNAVAILABLE', detail: `${problem}; seen there: ${seen.code}: ${seen.detail}` };
}

function jobNode(request: CopyRequest, jobId: string, node: NodePart, at: AnswerContext): JobNodeOutcome {
  return {
    jobId,
    outcome: {
      node: request.destination,
      ...node,
      ...(node.detail ? { detail: node.detail.slice(0, 4096) } : {}),
      conductorId: at.conductorId,
      at: at.now.toISOString(),
    },
  };
}
