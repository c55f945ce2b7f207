import {
  type CopyRequest,
  REQUEST_CONTENT_TYPE,
  ReasonError,
  type ReplyInfo,
  assertDeadlineNotPassed,
  jobCopyRequestId,
  parseCopyRequest,
  peekReplyInfo,
  replyToProblem,
} from '@app/contracts';
import type { JobRecords } from '@app/image-store';
import type { Delivery, RetryHeaderSigner } from '@app/messaging';
import { type Failure, asFailure } from './copy-results';

/** What every delivery is, admitted or not: its attempt and first-seen time as far as they are believed. */
interface RetryStanding {
  /** 1 unless a conductor of this cell signed another attempt number. */
  attempt: number;
  /** The signed first-seen time, or the moment of admission. */
  firstSeen: string;
  /** x-icc headers the delivery carried without a valid signature (ignored). */
  ignoredHeaders: string[];
}

export type Admitted = RetryStanding & { kind: 'admitted'; request: CopyRequest };
export type Refused = RetryStanding & {
  kind: 'refused';
  failure: Failure;
  /** The request, when the body parsed (a refusal for its job or deadline). */
  request?: CopyRequest;
  /** What could be read of the message to address the answer, whatever was wrong with it. */
  replyInfo: ReplyInfo;
};
export type Admission = Admitted | Refused;

export interface AdmissionDeps {
  signer: Pick<RetryHeaderSigner, 'read'>;
  maxAttempts: number;
  /** The pre-cache jobs' records: a job's copy is admitted only into a job that lists its node. */
  jobs?: Pick<JobRecords, 'read'>;
}

/**
 * Everything decided about a delivery before its copy starts: retry headers believed only when signed,
 * content type, reply_to, the body, the job it claims, its deadline. Reads the job's record, acts on
 * nothing: the handler settles a refusal like any other outcome (copy-settlement.ts).
 */
export async function admitCopyRequest(
  delivery: Pick<Delivery, 'message' | 'properties' | 'content'>,
  deps: AdmissionDeps,
  now: Date,
): Promise<Admission> {
  // Headers are requester input: attempt and first-seen count only when a conductor of this cell signed them.
  const retry = deps.signer.read(delivery.message, deps.maxAttempts);
  const standing: RetryStanding = {
    attempt: retry.attempt,
    firstSeen: retry.firstSeen ?? now.toISOString(),
    ignoredHeaders: retry.ignored,
  };
  let request: CopyRequest | undefined;
  try {
    checkContentType(delivery.properties.contentType as string | undefined);
    checkReplyTo(delivery.properties.replyTo as string | undefined);
    request = parseCopyRequest(delivery.content);
    await checkJob(request, deps.jobs);
    assertDeadlineNotPassed(request, now);
    return { kind: 'admitted', ...standing, request };
  } catch (error) {
    return {
      kind: 'refused',
      ...standing,
      failure: asFailure(error),
      request,
      replyInfo: peekReplyInfo(delivery.content, delivery.properties.messageId),
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

/**
 * A request carrying a job id is one of that job's copies: its id must be `<jobId>.<destination>` and
 * the job must list the destination, so no requester can write outcomes into another's job.
 */
async function checkJob(request: CopyRequest, jobs: AdmissionDeps['jobs']): Promise<void> {
  if (request.jobId === undefined) return;
  if (request.requestId !== jobCopyRequestId(request.jobId, request.destination))
    throw new ReasonError(
      'INVALID_REQUEST',
      `requestId: a copy of job ${request.jobId} must be named ${jobCopyRequestId(request.jobId, request.destination)}`,
    );
  const record = await jobs?.read(request.jobId);
  if (!record || record.type !== 'precache' || !record.nodes.includes(request.destination))
    throw new ReasonError(
      'INVALID_REQUEST',
      `jobId: no pre-cache job ${request.jobId} with node ${request.destination} in this cell`,
    );
}
