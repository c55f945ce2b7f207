import {
  type CellTopology,
  type JobEvent,
  type JobRefusal,
  type JobRequest,
  type NodeOutcome,
  SUCCESSFUL_NODE_OUTCOMES,
} from '@app/contracts';
import type { BrokerConnection } from '@app/messaging';
import { CliError, ExitCode } from '../cli/exit-codes';
import { formatBytes } from '../cli/format';
import type { ProgressBoard } from '../cli/progress-board';
import { JobClient, type JobsAnswer } from './job-client';

export class JobRefusedError extends CliError {
  constructor(
    jobId: string,
    readonly refusal: JobRefusal,
  ) {
    super(ExitCode.FAILED, `job ${jobId} refused: ${refusal.reason}: ${refusal.detail}`);
  }
}

export interface FollowJobOptions {
  /** Follow the job to its result; otherwise end at its acceptance. */
  wait: boolean;
  timeoutMs: number;
  /** One line per node (progress, then outcome) while waiting; none without it. */
  board?: ProgressBoard;
  /** Called once the broker confirmed the job. */
  onPublished?: () => void;
  signal?: AbortSignal;
}

/**
 * Publishes a pre-cache or purge job and answers with its acceptance or (wait) its result; a refusal or
 * no answer in time is a CliError. Shared by `icc precache|purge` and `icc demo`.
 */
export async function followJob(
  connection: BrokerConnection,
  topology: CellTopology,
  job: JobRequest,
  options: FollowJobOptions,
): Promise<JobEvent> {
  const { board, wait } = options;
  const client = new JobClient(connection, topology);
  const seen = new Set<string>();
  let resolveEnd: (answer: JobsAnswer) => void = () => undefined;
  const end = new Promise<JobsAnswer>((resolve) => (resolveEnd = resolve));
  const showOutcome = (outcome: NodeOutcome, event: JobEvent) => {
    if (!board || !wait || seen.has(outcome.node)) return;
    seen.add(outcome.node);
    board.add(outcome.node, outcome.node);
    board.finish(
      outcome.node,
      `${outcome.outcome}${outcome.bytes ? ` ${formatBytes(outcome.bytes)}` : ''} (${event.nodesDone}/${event.nodesTotal})`,
      SUCCESSFUL_NODE_OUTCOMES.includes(outcome.outcome),
    );
  };
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await client.prepare(
      {
        onAnswer: (answer) => {
          if (answer.type === 'job-refused' || answer.type === 'cancel-answer') return resolveEnd(answer);
          if (answer.jobId !== job.jobId) return;
          for (const outcome of answer.nodes ?? []) showOutcome(outcome, answer);
          if (answer.outcome) showOutcome(answer.outcome, answer);
          if (answer.type === 'job-result' || (answer.type === 'job-accepted' && !wait)) resolveEnd(answer);
        },
        onProgress:
          board && wait
            ? (event) => {
                const node = event.destination;
                if (seen.has(node)) return;
                board.add(node, node);
                board.update(node, event);
              }
            : undefined,
      },
      wait ? { jobId: job.jobId } : undefined,
    );
    await client.publish(job, job.jobId);
    options.onPublished?.();
    const stopped = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new CliError(
              ExitCode.TIMED_OUT,
              `no ${wait ? 'result' : 'answer'} for job ${job.jobId} within ${options.timeoutMs / 1000} s; it goes on (icc job status ${job.jobId})`,
            ),
          ),
        options.timeoutMs,
      );
      const signal = options.signal;
      if (signal) {
        onAbort = () => reject(signal.reason as Error);
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    const answer = await Promise.race([end, stopped]);
    if (answer.type === 'job-refused') throw new JobRefusedError(job.jobId, answer);
    if (answer.type === 'cancel-answer') throw new CliError(ExitCode.ERROR, 'unexpected answer to a job');
    return answer;
  } finally {
    clearTimeout(timer);
    if (onAbort) options.signal?.removeEventListener('abort', onAbort);
    board?.stop();
    await client.close();
  }
}
