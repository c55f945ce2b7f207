import { randomUUID } from 'node:crypto';
import {
  type CancelRequest,
  type JobEvent,
  type JobRequest,
  JOB_MESSAGE_VERSION,
  MessageValidationError,
  type NodeOutcome,
  SUCCESSFUL_NODE_OUTCOMES,
  cellTopology,
  parseJobsQueueMessage,
} from '@app/contracts';
import { connectToBroker } from '../broker/agent-broker';
import { type BrokerCliOptions, resolveBrokerTarget } from '../broker/broker-login';
import { CliError, ExitCode, type ExitCodeValue, UsageError } from '../cli/exit-codes';
import { formatBytes } from '../cli/format';
import { ProgressBoard } from '../cli/progress-board';
import { table } from '../cli/tables';
import type { Terminal } from '../cli/terminal';
import { parseCellId, parseTimeoutSeconds } from '../copy/copy-request-builder';
import { JobClient, type JobsAnswer } from './job-client';
import { JobRefusedError, followJob } from './job-follower';

export const DEFAULT_JOB_TIMEOUT_S = 1800;

interface BrokerOptions extends BrokerCliOptions {
  cell?: string;
  json?: boolean;
}

export interface JobCommandOptions extends BrokerOptions {
  nodes?: string;
  all?: boolean;
  percent?: string;
  sha256?: string;
  forceUnpin?: boolean;
  jobId?: string;
  wait?: boolean;
  timeout?: string;
}

/** Message fields → the flags a person typed, so a refusal names what to fix. */
const FLAG_OF: Record<string, string> = {
  nodes: '--nodes',
  all: '--all',
  percent: '--percent',
  jobId: '--job-id',
  imageId: '<imageId>',
  sha256: '--sha256',
  requestId: '<requestId>',
};

/** Validates with the wire schema itself: the CLI refuses exactly what a conductor would. */
function validated<T>(message: T): T {
  try {
    return parseJobsQueueMessage(message) as T;
  } catch (error) {
    if (error instanceof MessageValidationError) {
      const first = error.issues[0];
      const field = first.field.split('.')[0]!;
      throw new UsageError(
        FLAG_OF[field] ?? field,
        `${first.reason}${error.issues.length > 1 ? ` (and: ${error.message})` : ''}`,
      );
    }
    throw error;
  }
}

export function buildJob(
  type: JobRequest['type'],
  imageId: string,
  options: Pick<JobCommandOptions, 'nodes' | 'all' | 'percent' | 'sha256' | 'forceUnpin' | 'jobId'>,
): JobRequest {
  const nodes =
    options.nodes === undefined
      ? undefined
      : options.nodes
          .split(',')
          .map((n) => n.trim())
          .filter(Boolean);
  let percent: number | undefined;
  if (options.percent !== undefined) {
    percent = Number(options.percent);
    if (options.percent.trim() === '' || !Number.isFinite(percent))
      throw new UsageError('--percent', `must be a number (got ${JSON.stringify(options.percent)})`);
  }
  const message = {
    v: JOB_MESSAGE_VERSION,
    type,
    jobId: options.jobId ?? `${type}-${randomUUID()}`,
    imageId,
    ...(nodes !== undefined ? { nodes } : {}),
    ...(options.all ? { all: true } : {}),
    ...(percent !== undefined ? { percent } : {}),
    ...(type === 'precache' && options.sha256 !== undefined ? { sha256: options.sha256 } : {}),
    ...(type === 'purge' && options.forceUnpin ? { forceUnpin: true } : {}),
  };
  return validated(message as JobRequest);
}

/** `icc precache` and `icc purge`: publish the job; with --wait follow it node by node to its result. */
export async function runJob(
  type: JobRequest['type'],
  imageId: string,
  options: JobCommandOptions,
  term: Terminal,
): Promise<ExitCodeValue> {
  const job = buildJob(type, imageId, options);
  const topology = cellTopology(parseCellId(options.cell));
  const broker = resolveBrokerTarget(options);
  const timeoutMs = parseTimeoutSeconds(options.timeout, DEFAULT_JOB_TIMEOUT_S);
  const connection = await connectToBroker(broker, type);
  try {
    const event = await followJob(connection, topology, job, {
      wait: options.wait === true,
      timeoutMs,
      board: options.json
        ? undefined
        : new ProgressBoard({ tty: term.stderrIsTTY, stream: process.stderr, writeLine: (l) => term.err(l) }),
      onPublished: () => {
        if (!options.json)
          term.err(
            `${type} job ${job.jobId} for ${job.imageId} published; ${options.wait ? 'following it...' : 'waiting for its acceptance...'}`,
          );
      },
    }).catch((error: unknown) => {
      if (error instanceof JobRefusedError && options.json) term.out(JSON.stringify(error.refusal));
      throw error;
    });
    if (options.json) term.out(JSON.stringify(event));
    else if (!options.wait)
      // The acceptance only, even of a job that has finished: its table is `icc job status`.
      term.out(`accepted: ${jobSummaryLine(event)}; follow it: icc job status ${event.jobId}`);
    else {
      term.out(renderJobTable(event.nodes ?? []));
      term.out(jobSummaryLine(event));
    }
    if (!options.wait) return ExitCode.OK;
    return jobSucceeded(event) ? ExitCode.OK : ExitCode.FAILED;
  } finally {
    await connection.close();
  }
}

/** Every node of the job ended with a copy (completed or already-present). */
export function jobSucceeded(event: JobEvent): boolean {
  return (event.nodes ?? []).every((n) => SUCCESSFUL_NODE_OUTCOMES.includes(n.outcome));
}

/** `icc job cancel <jobId>` and `icc cancel <requestId>`: publish the cancel, print its answer. */
export async function runCancel(
  target: { jobId?: string; requestId?: string },
  options: BrokerOptions & { timeout?: string },
  term: Terminal,
): Promise<ExitCodeValue> {
  const cancel = validated<CancelRequest>({ v: JOB_MESSAGE_VERSION, type: 'cancel', ...target });
  const topology = cellTopology(parseCellId(options.cell));
  const broker = resolveBrokerTarget(options);
  const timeoutMs = parseTimeoutSeconds(options.timeout, 60);
  const connection = await connectToBroker(broker, 'cancel');
  const client = new JobClient(connection, topology);
  try {
    let resolveAnswer: (answer: JobsAnswer) => void = () => undefined;
    const answered = new Promise<JobsAnswer>((resolve) => (resolveAnswer = resolve));
    await client.prepare({
      onAnswer: (a) => (a.type === 'cancel-answer' || a.type === 'job-refused') && resolveAnswer(a),
    });
    await client.publish(cancel, `cancel-${randomUUID()}`);
    let timer: NodeJS.Timeout | undefined;
    const answer = await Promise.race([
      answered,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new CliError(
                ExitCode.TIMED_OUT,
                `no answer to the cancel within ${timeoutMs / 1000} s (is a conductor running?)`,
              ),
            ),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    if (options.json) term.out(JSON.stringify(answer));
    if (answer.type === 'job-refused')
      throw new CliError(ExitCode.FAILED, `cancel refused: ${answer.reason}: ${answer.detail}`);
    if (answer.type !== 'cancel-answer') throw new CliError(ExitCode.ERROR, 'unexpected answer to a cancel');
    if (!options.json) term.out(`${answer.status}: ${answer.detail}`);
    return answer.status === 'not-found' ? ExitCode.FAILED : ExitCode.OK;
  } finally {
    await client.close();
    await connection.close();
  }
}

/** The nodes' outcomes by node id; the first `limit` only (the caller says how many more there are). */
export function renderJobTable(nodes: readonly NodeOutcome[], limit = Infinity): string {
  return table(
    ['node', 'outcome', 'bytes', 'detail'],
    [...nodes]
      .sort((a, b) => a.node.localeCompare(b.node))
      .slice(0, limit)
      .map((n) => [
        n.node,
        n.outcome,
        n.bytes ? formatBytes(n.bytes) : '-',
        [n.reason, n.detail].filter(Boolean).join(': ').slice(0, 100),
      ]),
  );
}

export function jobSummaryLine(
  event: Pick<
    JobEvent,
    'jobId' | 'jobType' | 'imageId' | 'nodesDone' | 'nodesTotal' | 'bytesDone' | 'cancelled'
  > & { nodes?: readonly NodeOutcome[] },
): string {
  const counts = new Map<string, number>();
  for (const n of event.nodes ?? []) counts.set(n.outcome, (counts.get(n.outcome) ?? 0) + 1);
  const parts = [...counts]
    .sort()
    .map(([k, v]) => `${v} ${k}`)
    .join(', ');
  return `${event.jobType} job ${event.jobId} (${event.imageId}): ${event.nodesDone}/${event.nodesTotal} nodes done${parts ? ` (${parts})` : ''}, ${formatBytes(event.bytesDone)}${event.cancelled ? ', cancelled' : ''}`;
}
