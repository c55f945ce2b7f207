import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  ALL_PROGRESS_BINDING,
  type CellTopology,
  type CopyResult,
  cellQueues,
  cellTopology,
} from '@app/contracts';
import { ImageStore } from '@app/image-store';
import type { BrokerConnection } from '@app/messaging';
import { connectToBroker } from '../broker/agent-broker';
import { type BrokerCliOptions, resolveBrokerTarget } from '../broker/broker-login';
import { CliError, ExitCode, type ExitCodeValue, UsageError } from '../cli/exit-codes';
import { formatBytes, formatMs } from '../cli/format';
import { ProgressBoard } from '../cli/progress-board';
import type { Terminal } from '../cli/terminal';
import { parseTimeoutSeconds } from '../copy/copy-request-builder';
import { CopyRequester } from '../copy/copy-requester';
import { buildJob, jobSucceeded, jobSummaryLine, renderJobTable } from '../jobs/job-commands';
import { followJob } from '../jobs/job-follower';
import { ConductorChild } from './conductor-child';
import { seedImages, verifyDestinations } from './demo-images';
import { DemoOrigin } from './demo-origin';
import { DEFAULT_BIG_IMAGE_MIB, type DemoPlan, demoPlan } from './demo-plan';
import { type DemoOutcome, outcomeStatus, renderOutcomes, renderSummary, summarize } from './demo-summary';

export interface DemoOptions extends BrokerCliOptions {
  keep?: boolean;
  bigImageMib?: string;
  timeout?: string;
}

export const DEFAULT_DEMO_TIMEOUT_S = 300;
const CONDUCTOR_START_TIMEOUT_MS = 30_000;
const CONDUCTOR_STOP_GRACE_MS = 15_000;

function parseBigImageMib(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_BIG_IMAGE_MIB;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 65_536)
    throw new UsageError(
      '--big-image-mib',
      `must be a whole number of MiB between 1 and 65536 (got ${JSON.stringify(raw)})`,
    );
  return Number(raw);
}

/** Undo steps, run last-in first-out; each failure is reported and the rest still run. */
class Cleanup {
  private readonly steps: { what: string; run: () => Promise<void> }[] = [];

  add(what: string, run: () => Promise<void>): void {
    this.steps.push({ what, run });
  }

  async runAll(report: (line: string) => void): Promise<void> {
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.run();
      } catch (error) {
        report(`cleanup: could not ${step.what}: ${(error as Error).message}`);
      }
    }
  }
}

/**
 * `icc demo`: a whole temporary cell on this machine. Seeds images into a temp CACHE_ROOT, starts a
 * conductor for a fresh cell id, requests copies (fan-out, duplicates, disjoint pairs), shows their
 * progress, summarises, runs a pre-cache job onto every node and prints its per-node table, verifies every
 * copied image independently, and removes everything it created, also on Ctrl-C.
 */
export async function runDemo(options: DemoOptions, term: Terminal): Promise<ExitCodeValue> {
  const broker = resolveBrokerTarget(options);
  const bigImageMib = parseBigImageMib(options.bigImageMib);
  const timeoutMs = parseTimeoutSeconds(options.timeout, DEFAULT_DEMO_TIMEOUT_S);

  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupt.signal.aborted) {
      term.err(`${signal} again: exiting without finishing the cleanup`);
      process.exit(ExitCode.INTERRUPTED);
    }
    term.err(`\n${signal}: stopping the demo and cleaning up (again to exit at once)...`);
    interrupt.abort(new CliError(ExitCode.INTERRUPTED, `interrupted by ${signal}`));
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  const cancelled = new Promise<never>((_, reject) =>
    interrupt.signal.addEventListener('abort', () => reject(interrupt.signal.reason as Error)),
  );
  cancelled.catch(() => {});
  const checkInterrupted = () => {
    if (interrupt.signal.aborted) throw interrupt.signal.reason;
  };

  const cleanup = new Cleanup();
  let board: ProgressBoard | undefined;
  try {
    // The broker first: nothing to clean up yet if it is not there.
    const connection = await connectToBroker(broker, 'demo');
    cleanup.add('close the broker connection', () => connection.close());

    const runTag = `demo-${randomBytes(4).toString('hex')}`;
    const topology = cellTopology(runTag);
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-demo-'));
    cleanup.add(`remove ${dir}`, async () => {
      if (options.keep) term.out(`kept ${dir} (--keep)`);
      else await fsp.rm(dir, { recursive: true, force: true });
    });
    const root = path.join(dir, 'cache');
    const logFile = path.join(dir, 'conductor.log');
    const plan = demoPlan(bigImageMib, runTag);
    term.out(`icc demo: cell ${topology.cellId}, ${plan.nodes.length} nodes`);
    term.out(`temp folder: ${dir} (cache root ${root}, conductor log ${logFile})`);

    const origin = await DemoOrigin.start();
    cleanup.add('stop the demo origin', () => origin.stop());
    const seeded = await seedImages(root, plan, dir, origin, term, interrupt.signal);
    checkInterrupted();

    const conductor = ConductorChild.start(
      conductorEnv(topology, root, broker.urls.join(','), runTag, origin.urlTemplate),
      logFile,
    );
    // Deleting the cell's queues must come after the conductor stopped (it re-declares them on reconnect).
    cleanup.add(`delete the queues and exchange of cell ${topology.cellId}`, () =>
      deleteCellTopology(connection, topology),
    );
    cleanup.add(`stop the conductor (pid ${conductor.pid})`, () => conductor.stop(CONDUCTOR_STOP_GRACE_MS));
    term.out(`starting a conductor (pid ${conductor.pid}, COPY_CONCURRENCY=4)...`);
    await conductor.waitForLog(
      (l) => l.msg === 'consuming',
      "its 'consuming' line",
      CONDUCTOR_START_TIMEOUT_MS,
      interrupt.signal,
    );

    const labels = plan.copies.map(
      (c, i) => `#${i + 1} ${c.kind} ${c.request.imageId} -> ${c.request.destination}`,
    );
    board = new ProgressBoard({
      tty: term.stdoutIsTTY,
      stream: process.stdout,
      writeLine: (l) => term.out(l),
      labelWidth: Math.max(...labels.map((l) => l.length)),
    });
    const requester = new CopyRequester(connection, topology);
    cleanup.add('close the demo channels', () => requester.close());
    const liveBoard = board;
    plan.copies.forEach((c, i) => liveBoard.add(c.request.requestId, labels[i]!));
    await requester.prepare({
      replies: true,
      progress: {
        bindingKey: ALL_PROGRESS_BINDING,
        onProgress: (event) => liveBoard.update(event.requestId, event),
      },
    });

    term.out(
      `requesting ${plan.copies.length} copies: fan-out of ${plan.images[0]!.imageId} to 5 nodes (no source given), a duplicate request, two disjoint pairs, an image only the origin has to 2 nodes`,
    );
    const started = performance.now();
    for (const { request } of plan.copies) await requester.publish(request, request.requestId);
    let finishedAt = started;
    const outcomes: DemoOutcome[] = await Promise.all(
      plan.copies.map(async (copy): Promise<DemoOutcome> => {
        const id = copy.request.requestId;
        try {
          const result = await requester.waitForFinal(id, timeoutMs, {
            cancel: cancelled,
            onAttemptFailed: (r) =>
              liveBoard.log(`${id}: attempt ${r.attempt} failed (${r.reason}), retrying`),
          });
          finishedAt = Math.max(finishedAt, performance.now());
          liveBoard.finish(id, describe(result), result.status !== 'failed');
          return { copy, result };
        } catch (error) {
          if (interrupt.signal.aborted) throw error;
          liveBoard.finish(id, (error as Error).message, false);
          return { copy, error: (error as Error).message };
        }
      }),
    );
    board.stop();
    board = undefined;
    checkInterrupted();

    await markCoalesced(conductor, outcomes);
    const summary = summarize(outcomes, finishedAt - started);
    term.out('');
    term.out(renderOutcomes(outcomes));
    term.out(renderSummary(summary));
    for (const image of plan.images.filter((i) => i.seedNode === undefined))
      term.out(
        `origin: ${origin.gets.get(image.imageId) ?? 0} download(s) of ${image.imageId} for ${plan.copies.filter((c) => c.request.imageId === image.imageId).length} copies (the others read the first holder)`,
      );

    const jobOk = await runPrecacheJob(connection, topology, plan, timeoutMs, term, interrupt.signal);

    const verified = await verifyDestinations(new ImageStore({ root }), plan, seeded, term, interrupt.signal);
    checkInterrupted();
    const failures = outcomes.filter(
      (o) => o.result?.status !== 'completed' && o.result?.status !== 'already-present',
    );
    for (const f of failures)
      term.err(
        `request ${f.copy.request.requestId}: ${outcomeStatus(f)}${f.result?.detail ? ` - ${f.result.detail}` : ''}`,
      );
    if (verified.ok && failures.length === 0 && jobOk) {
      term.out(`all ${verified.total} images verified`);
      return ExitCode.OK;
    }
    term.err(
      `${verified.total - verified.good} of ${verified.total} images failed verification, ${failures.length} requests did not succeed${jobOk ? '' : ', the pre-cache job did not succeed'}`,
    );
    return ExitCode.ERROR;
  } finally {
    board?.stop();
    await cleanup.runAll((line) => term.err(line));
    for (const s of signals) process.off(s, onSignal);
  }
}

/**
 * The pre-cache job, the way `icc precache --all --wait` runs it: per-node lines, then its table. A
 * refused or unanswered job is reported here and counts as a failed request.
 */
async function runPrecacheJob(
  connection: BrokerConnection,
  topology: CellTopology,
  plan: DemoPlan,
  timeoutMs: number,
  term: Terminal,
  signal: AbortSignal,
): Promise<boolean> {
  const { jobId, imageId } = plan.precache;
  const job = buildJob('precache', imageId, { all: true, jobId });
  term.out('');
  term.out(`pre-cache job ${jobId}: ${imageId} onto every node (icc precache ${imageId} --all --wait)`);
  const board = new ProgressBoard({
    tty: term.stdoutIsTTY,
    stream: process.stdout,
    writeLine: (l) => term.out(l),
    labelWidth: Math.max(...plan.nodes.map((n) => n.length)),
  });
  try {
    const event = await followJob(connection, topology, job, { wait: true, timeoutMs, board, signal });
    term.out(renderJobTable(event.nodes ?? []));
    term.out(jobSummaryLine(event));
    if (jobSucceeded(event)) return true;
    term.err(`pre-cache job ${jobId}: not every node holds ${imageId}`);
    return false;
  } catch (error) {
    if (signal.aborted) throw error;
    term.err(`pre-cache job ${jobId}: ${(error as Error).message}`);
    return false;
  }
}

function describe(result: CopyResult): string {
  if (result.status === 'failed') return `failed ${result.reason}`;
  if (result.status === 'already-present') return 'already-present';
  return `completed ${formatBytes(result.bytes)} in ${formatMs(result.durations.totalMs)}`;
}

function conductorEnv(
  topology: CellTopology,
  root: string,
  url: string,
  runTag: string,
  originUrl: string,
): Record<string, string> {
  // A minimal environment: conductor settings from the caller's shell (RETRY_DELAYS_MS, ADMIN_TOKEN...)
  // must not leak in, or the cell's queues would not be the ones this demo deletes.
  const inherited: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'TMPDIR', 'LANG', 'TZ', 'SYSTEMROOT']) {
    const value = process.env[name];
    if (value !== undefined) inherited[name] = value;
  }
  return {
    ...inherited,
    CELL_ID: topology.cellId,
    CACHE_ROOT: root,
    AMQP_URL: url,
    ADMIN_PORT: '0',
    COPY_CONCURRENCY: '4',
    CONDUCTOR_ID: `${runTag}-conductor`,
    ORIGIN_URL: originUrl,
    PROGRESS_INTERVAL_MS: '200',
    SHUTDOWN_GRACE_MS: '3000',
    LOG_LEVEL: 'info',
  };
}

/**
 * Which answers came from a copy already running (coalescing is not part of the result on the wire; the
 * conductor logs it with each answer). Results are published before that line is written, so wait briefly.
 */
async function markCoalesced(conductor: ConductorChild, outcomes: DemoOutcome[]): Promise<void> {
  const deadline = Date.now() + 3_000;
  for (;;) {
    const answered = new Map<string, boolean>();
    for (const line of await conductor.logLines()) {
      if (line.msg === 'copy request answered' && typeof line.requestId === 'string')
        answered.set(line.requestId, line.coalesced === true);
    }
    const missing = outcomes.filter(
      (o) => o.result && o.result.status !== 'failed' && !answered.has(o.copy.request.requestId),
    );
    for (const o of outcomes) o.coalesced = answered.get(o.copy.request.requestId) ?? false;
    if (missing.length === 0 || Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function deleteCellTopology(connection: BrokerConnection, topology: CellTopology): Promise<void> {
  const { channel } = await connection.openChannel(5_000);
  channel.on('error', () => {});
  try {
    for (const queue of cellQueues(topology)) await channel.deleteQueue(queue.name);
    await channel.deleteExchange(topology.eventsExchange.name);
  } finally {
    await channel.close().catch(() => {});
  }
}
