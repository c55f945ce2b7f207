import {
  JOB_MESSAGE_VERSION,
  type JobRefusal,
  type JobsQueueMessage,
  ReasonError,
  type ReasonCode,
  errorText,
  jobIdSchema,
  parseJobsQueueMessage,
  replyToProblem,
} from '@app/contracts';

/** Why a jobs-queue message is refused, and its job id when one could be read (for job.<jobId>). */
export interface Refusal {
  reason: ReasonCode;
  detail: string;
  jobId?: string;
}

export type Admission = { admitted: JobsQueueMessage } | { refused: Refusal };

/**
 * Whether a message of the jobs queue is one this conductor can act on: a usable reply_to (if any) and
 * a valid body. Anything thrown while reading it is a refusal, never a hand-back: it would fail again.
 */
export function admitJobsQueueMessage(content: Buffer, replyTo: string | undefined): Admission {
  try {
    const problem = replyTo === undefined ? undefined : replyToProblem(replyTo);
    if (problem) throw new ReasonError('INVALID_REQUEST', problem);
    return { admitted: parseJobsQueueMessage(content) };
  } catch (error) {
    return { refused: refusalOf(error, peekJobId(content)) };
  }
}

/**
 * What a job that could not be accepted becomes: a refusal when the reason is final (a job id reused for
 * another job, `all` in a cell without nodes), undefined when it may pass later (an I/O error, the cell's
 * folder gone): the message is then handed back.
 */
export function acceptanceRefusal(error: unknown, jobId: string): Refusal | undefined {
  if (!(error instanceof ReasonError) || error.retryable) return undefined;
  return refusalOf(error, jobId);
}

export function refusalOf(error: unknown, jobId: string | undefined): Refusal {
  return {
    reason: error instanceof ReasonError ? error.code : 'INVALID_REQUEST',
    detail: errorText(error).slice(0, 4096),
    ...(jobId ? { jobId } : {}),
  };
}

export function jobRefusal(refusal: Refusal, conductorId: string, at: string): JobRefusal {
  return {
    v: JOB_MESSAGE_VERSION,
    type: 'job-refused',
    ...(refusal.jobId ? { jobId: refusal.jobId } : {}),
    reason: refusal.reason,
    detail: refusal.detail,
    conductorId,
    at,
  };
}

/** The job id of a message too broken to parse, when a valid one can be read from its first 64 KiB. */
export function peekJobId(content: Buffer): string | undefined {
  const match = /"jobId"\s*:\s*"([^"\\]{1,64})"/.exec(content.subarray(0, 64 * 1024).toString('utf8'));
  return match && jobIdSchema.safeParse(match[1]).success ? match[1] : undefined;
}
