import * as os from 'node:os';
import type { CellTopology } from '@app/contracts';
import { BrokerConnection, redactUrl } from '@app/messaging';
import { CliError, ExitCode } from '../cli/exit-codes';
import { agentLogger } from '../cli/quiet-logger';
import type { BrokerTarget } from './broker-login';

/** A CLI should not hang on a broker that is down: one attempt, at most this long. */
export const CONNECT_TIMEOUT_MS = 5_000;

export function brokerUnreachableMessage(urls: readonly string[], cause: string): string {
  const where = urls.map(redactUrl).join(', ');
  return (
    `RabbitMQ is not reachable at ${urls.length > 1 ? `any of ${where}` : where} (${cause}).\n` +
    'Start it with `rabbitmq-server -detached`, or point --amqp-url (or AMQP_URL) at a running broker.'
  );
}

/**
 * Connects to the first broker of the list that answers, or fails fast: once every URL has failed once
 * (connection refused, wrong credentials), or CONNECT_TIMEOUT_MS per URL passed without a connection, it
 * ends with exit code 5 and a message saying what to do.
 * The returned connection would reconnect after a later loss; callers that cannot survive one (an
 * exclusive reply queue dies with its connection) watch `disconnected` themselves.
 */
export async function connectToBroker(
  target: BrokerTarget,
  purpose: string,
  timeoutMs = CONNECT_TIMEOUT_MS,
): Promise<BrokerConnection> {
  const { urls } = target;
  const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, '-');
  const connection = new BrokerConnection({
    url: urls,
    tls: target.tls,
    auth: target.auth,
    connectionName: `icc-${purpose}-${host}-${process.pid}`,
    logger: agentLogger(),
    connectTimeoutMs: timeoutMs,
    reconnect: { initialDelayMs: 500, maxDelayMs: 2_000 },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const offs: (() => void)[] = [];
      // One try per URL; the backoff between tries is at most the CLI's maxDelayMs.
      const overallMs = urls.length * timeoutMs + (urls.length - 1) * 2_000;
      let failures = 0;
      const timer = setTimeout(() => settle(new Error(`no connection within ${overallMs} ms`)), overallMs);
      const settle = (error?: Error) => {
        clearTimeout(timer);
        for (const off of offs) off();
        if (error) reject(error);
        else resolve();
      };
      offs.push(connection.on('connected', () => settle()));
      offs.push(
        connection.on('connect-failed', ({ error }) => {
          if (++failures >= urls.length) settle(error);
        }),
      );
      offs.push(
        connection.on('closed', () => settle(connection.lastError ?? new Error('connection closed'))),
      );
      connection.start();
    });
  } catch (error) {
    await connection.close();
    throw new CliError(ExitCode.UNREACHABLE, brokerUnreachableMessage(urls, describeAmqpError(error)), {
      cause: error,
    });
  }
  return connection;
}

/**
 * Checks, with passive declarations, that the cell's request queue (and its events exchange) exist: a
 * request published to a queue that does not exist is silently dropped by the default exchange.
 */
export async function checkCellExists(
  connection: BrokerConnection,
  topology: CellTopology,
  options: { exchange: boolean },
): Promise<void> {
  const missing = async (
    check: (channel: import('amqplib').Channel) => Promise<unknown>,
  ): Promise<boolean> => {
    const { channel } = await connection.openChannel(CONNECT_TIMEOUT_MS);
    channel.on('error', () => {}); // a failed passive declare closes the channel; the call rejects
    try {
      await check(channel);
      await channel.close().catch(() => {});
      return false;
    } catch (error) {
      if ((error as { code?: number }).code === 404) return true;
      throw error;
    }
  };
  const hint = `no conductor has started for cell '${topology.cellId}' on this broker yet (check --cell / CELL_ID, or start a conductor with CELL_ID=${topology.cellId})`;
  if (await missing((c) => c.checkQueue(topology.requestQueue.name)))
    throw new CliError(ExitCode.UNREACHABLE, `RabbitMQ has no queue ${topology.requestQueue.name}: ${hint}`);
  if (options.exchange && (await missing((c) => c.checkExchange(topology.eventsExchange.name))))
    throw new CliError(
      ExitCode.UNREACHABLE,
      `RabbitMQ has no exchange ${topology.eventsExchange.name}: ${hint}`,
    );
}

export function describeAmqpError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ENOTFOUND') return 'host not found';
  // The reply code as a word: a broker address whose port holds "403" (127.0.0.1:40303) is not a refusal.
  if (/ACCESS.REFUSED|\b403\b/i.test(error.message))
    return `access refused: check the user and password in the URL`;
  return error.message;
}
