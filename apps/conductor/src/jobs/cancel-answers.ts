import {
  type CancelAnswer,
  type CancelRequest,
  type CopyResult,
  JOB_MESSAGE_VERSION,
  type NodeOutcome,
  jobIdSchema,
  nodeIdSchema,
} from '@app/contracts';
import type { JobStatus } from '@app/image-store';

export type CancelReply = Pick<CancelAnswer, 'status' | 'detail'>;

/** What a cancel finds in the cell's folder before it acts. */
export type CancelFinding =
  | {
      target: 'job';
      jobId: string;
      /** Undefined: no such job in this cell. */
      status?: Pick<JobStatus, 'state' | 'nodesDone' | 'nodesTotal'>;
    }
  | {
      target: 'request';
      requestId: string;
      /** The job and node the request id names, when a job record lists that node. */
      job?: { jobId: string; node: string };
      /** That node's outcome, when it has one. */
      finished?: Pick<NodeOutcome, 'outcome'>;
      /** A plain request's recorded final answer (looked for only when no job names the request). */
      answered?: Pick<CopyResult, 'status' | 'reason' | 'at'>;
    };

/** What the cancel did: the copies it aborted on this conductor, and whether a request's cancel marker is new. */
export interface CancelActs {
  aborted: number;
  /** Requests only: false when the request had been cancelled before. */
  fresh?: boolean;
}

export type CancelStep = { answer: CancelReply } | { cancel: 'job' | 'request' };

/**
 * The answer to a cancel, in each state of its job or request. `cancel` asks the caller to act (abort the
 * copies running here, write the cancel marker) and to ask again with what it did: the answer then says
 * what happened. A job or request that is over keeps its result: nothing is cancelled.
 */
export function cancelAnswer(finding: CancelFinding, conductorId: string): CancelStep;
export function cancelAnswer(
  finding: CancelFinding,
  conductorId: string,
  acts: CancelActs,
): { answer: CancelReply };
export function cancelAnswer(finding: CancelFinding, conductorId: string, acts?: CancelActs): CancelStep {
  if (finding.target === 'job') {
    const { jobId, status } = finding;
    if (!status) return { answer: { status: 'not-found', detail: `no job ${jobId} in this cell` } };
    if (status.state === 'done')
      return {
        answer: {
          status: 'already-final',
          detail: `job ${jobId} had finished: ${status.nodesDone} nodes`,
        },
      };
    if (!acts) return { cancel: 'job' };
    return {
      answer: {
        status: 'cancelled',
        detail: `job ${jobId} cancelled with ${status.nodesTotal - status.nodesDone} of ${status.nodesTotal} nodes not done: their queued copies are answered CANCELLED when taken, running ones are aborted (${acts.aborted} on ${conductorId})`,
      },
    };
  }
  const { requestId, job, finished, answered } = finding;
  if (job && finished)
    return {
      answer: {
        status: 'already-final',
        detail: `request ${requestId} (job ${job.jobId}, node ${job.node}) had finished: ${finished.outcome}`,
      },
    };
  if (answered)
    return {
      answer: {
        status: 'already-final',
        detail: `request ${requestId} was answered ${answered.status}${answered.reason ? ` ${answered.reason}` : ''} at ${answered.at}: that answer stands, also for a re-send; nothing was cancelled`,
      },
    };
  if (!acts) return { cancel: 'request' };
  if (acts.aborted > 0)
    return {
      answer: {
        status: 'cancelled',
        detail: `request ${requestId} was running on ${conductorId}: aborted, answered CANCELLED`,
      },
    };
  return {
    answer: {
      status: 'recorded',
      detail:
        `request ${requestId} is not running on ${conductorId}${acts.fresh === false ? ' (cancelled before)' : ''}: ` +
        'whichever conductor takes it next (queued, waiting for a retry, or running elsewhere, within a second) answers it CANCELLED; ' +
        'if no such request exists or it was already answered, nothing else happens',
    },
  };
}

export function cancelAnswerBody(
  cancel: CancelRequest,
  reply: CancelReply,
  conductorId: string,
  at: string,
): CancelAnswer {
  return {
    v: JOB_MESSAGE_VERSION,
    type: 'cancel-answer',
    ...(cancel.requestId ? { requestId: cancel.requestId } : {}),
    ...(cancel.jobId ? { jobId: cancel.jobId } : {}),
    ...reply,
    conductorId,
    at,
  };
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
