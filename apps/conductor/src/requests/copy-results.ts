import {
  COPY_RESULT_VERSION,
  type CopyRequest,
  type CopyResult,
  type ReasonCode,
  ReasonError,
  errorText,
} from '@app/contracts';
import type { CopyJobResult } from '../copy/copy-job';

/** Why a request was refused or its copy failed: a reason code and the detail the answer carries. */
export type Failure = { code: ReasonCode; detail: string };

export function asFailure(error: unknown): Failure {
  if (error instanceof ReasonError) return { code: error.code, detail: error.message };
  return { code: 'INTERNAL', detail: errorText(error) };
}

/** Where a request stands when it is answered; `now` is the moment of the answer. */
export interface AnswerContext {
  attempt: number;
  firstSeen: string;
  conductorId: string;
  now: Date;
}

/** Milliseconds from an ISO time to `now`, never negative (clocks of two conductors may disagree). */
export function elapsedSince(iso: string, now: Date): number {
  return Math.max(0, now.getTime() - Date.parse(iso));
}

/** The answer to a copy that completed, or found the image already there. */
export function successResult(request: CopyRequest, result: CopyJobResult, at: AnswerContext): CopyResult {
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
    attempt: at.attempt,
    durations: {
      totalMs: elapsedSince(at.firstSeen, at.now),
      lockWaitMs: result.lockWaitMs,
      copyMs: result.copyMs,
      verifyMs: result.verifyMs,
    },
    conductorId: at.conductorId,
    at: at.now.toISOString(),
  };
}

/**
 * The answer to a failure: final (`retryable: false`), or telling waiting requesters that another attempt
 * follows (`retryable: true`). `ids` is the request, or what could be read of a message that is none.
 */
export function failedResult(
  ids: { imageId?: string; source?: string; destination?: string },
  requestId: string,
  failure: Failure,
  retryable: boolean,
  at: AnswerContext,
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
    attempt: at.attempt,
    durations: { totalMs: elapsedSince(at.firstSeen, at.now) },
    conductorId: at.conductorId,
    at: at.now.toISOString(),
  };
}
