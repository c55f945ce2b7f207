import { type CopyResult, cellTopology, progressRoutingKey } from '@app/contracts';
import { checkCellExists, connectToBroker } from '../broker/agent-broker';
import { type BrokerCliOptions, resolveBrokerTarget } from '../broker/broker-login';
import { CliError, ExitCode, type ExitCodeValue } from '../cli/exit-codes';
import { formatBytes, formatMs } from '../cli/format';
import { ProgressBoard } from '../cli/progress-board';
import type { Terminal } from '../cli/terminal';
import { buildCopyRequest, parseCellId, parseTimeoutSeconds } from './copy-request-builder';
import { CopyRequester } from './copy-requester';

export const DEFAULT_WAIT_TIMEOUT_S = 600;

export interface CopyCommandOptions extends BrokerCliOptions {
  to: string;
  from?: string;
  sha256?: string;
  size?: string;
  cell?: string;
  wait?: boolean;
  timeout?: string;
  json?: boolean;
  requestId?: string;
}

/** `icc copy`: validate, publish, and with --wait follow the request to its final result. */
export async function runCopy(
  imageId: string,
  options: CopyCommandOptions,
  term: Terminal,
): Promise<ExitCodeValue> {
  // Everything a person can get wrong is checked before touching the broker.
  const request = buildCopyRequest(imageId, options);
  const topology = cellTopology(parseCellId(options.cell));
  const broker = resolveBrokerTarget(options);
  const timeoutMs = parseTimeoutSeconds(options.timeout, DEFAULT_WAIT_TIMEOUT_S);
  const wait = options.wait === true;
  const json = options.json === true;

  try {
    const connection = await connectToBroker(broker, 'copy');
    const requester = new CopyRequester(connection, topology);
    let board: ProgressBoard | undefined;
    try {
      await checkCellExists(connection, topology, { exchange: wait });
      if (wait && !json) {
        board = new ProgressBoard({
          tty: term.stderrIsTTY,
          stream: process.stderr,
          writeLine: (l) => term.err(l),
        });
        board.add(request.requestId, `${request.imageId} -> ${request.destination}`);
      }
      await requester.prepare({
        replies: wait,
        progress: board && {
          bindingKey: progressRoutingKey(request.destination),
          onProgress: (event) => {
            if (event.requestId === request.requestId) board?.update(request.requestId, event);
          },
        },
      });
      // correlation_id = requestId: what the protocol's examples do; any value we recognise would work.
      await requester.publish(request, request.requestId);
      if (!wait) {
        if (json)
          term.out(
            JSON.stringify({
              requestId: request.requestId,
              published: true,
              queue: topology.requestQueue.name,
              request,
            }),
          );
        else
          term.out(
            `published request ${request.requestId} to ${topology.requestQueue.name} (not waiting; use --wait to follow it)`,
          );
        return ExitCode.OK;
      }
      if (!json)
        term.err(
          `requested ${request.imageId} -> ${request.destination} (request ${request.requestId}); waiting for the result...`,
        );
      const note = (line: string) => (board ? board.log(line) : term.err(line));
      const result = await requester.waitForFinal(request.requestId, timeoutMs, {
        onAttemptFailed: (r) =>
          note(`attempt ${r.attempt} failed (${r.reason}), retrying${r.detail ? ` - ${r.detail}` : ''}`),
        onUnreadable: (problem) => term.err(`ignored an unreadable reply: ${problem}`),
        onConnectionLost: (reason) =>
          note(`lost the connection to RabbitMQ (${reason.message}); reconnecting...`),
        onResent: () =>
          note(`reconnected; request ${request.requestId} sent again (copies are idempotent: same answer)`),
        onResendDeferred: (problem) => note(`${problem}; sending again until it is`),
      });
      if (board) {
        board.finish(request.requestId, result.status, result.status !== 'failed');
        board.stop();
        board = undefined;
      }
      if (json) term.out(JSON.stringify(result));
      else describeResult(result, term);
      return result.status === 'failed' ? ExitCode.FAILED : ExitCode.OK;
    } finally {
      board?.stop();
      await requester.close();
      await connection.close();
    }
  } catch (error) {
    if (json && error instanceof CliError) {
      const status = error.exitCode === ExitCode.TIMED_OUT ? 'timed-out' : 'error';
      term.out(
        JSON.stringify({
          requestId: request.requestId,
          status,
          exitCode: error.exitCode,
          message: error.message,
        }),
      );
    }
    if (error instanceof CliError && error.exitCode === ExitCode.TIMED_OUT) {
      throw new CliError(
        ExitCode.TIMED_OUT,
        `${error.message} for request ${request.requestId}; it stays queued and its result will still be published (raise --timeout to wait longer)`,
      );
    }
    throw error;
  }
}

function describeResult(result: CopyResult, term: Terminal): void {
  const image = result.imageId ?? '?';
  const where = `${result.source ?? '?'} -> ${result.destination ?? '?'}`;
  const times = result.durations;
  if (result.status === 'completed') {
    term.out(
      `completed: ${image} copied ${where}, ${formatBytes(result.bytes)} in ${formatMs(times.totalMs)}` +
        ` (lock wait ${formatMs(times.lockWaitMs)}, attempt ${result.attempt}); sha256 ${result.sha256 ?? '-'}`,
    );
  } else if (result.status === 'already-present') {
    term.out(
      `already-present: ${result.destination ?? '?'} already holds a verified copy of ${image}; sha256 ${result.sha256 ?? '-'}`,
    );
  } else {
    term.err(
      `failed: ${result.reason}: ${result.detail ?? '(no detail)'} (request ${result.requestId}, attempt ${result.attempt})`,
    );
  }
}
