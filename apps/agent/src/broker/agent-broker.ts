import * as os from 'node:os';
import type { CellTopology } from '@app/contracts';
import { BrokerConnection, redactUrl } from '@app/messaging';
import { CliError, ExitCode, UsageError } from '../cli/exit-codes';
import { agentLogger } from '../cli/quiet-logger';

export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';
/** A CLI should not hang on a broker that is down: one attempt, at most this long. */
export const CONNECT_TIMEOUT_MS = 5_000;

export function validateAmqpUrl(url: string, flag = '--amqp-url'): string {
  if (!/^amqps?:\/\/[^/]/.test(url))
    throw new UsageError(flag, `must be an amqp:// or amqps:// URL (got ${JSON.stringify(redactUrl(url))})`);
  try {
    new URL(url);
  } catch {
    throw new UsageError(flag, 'is not a valid URL');
  }
  return url;
}

export function brokerUnreachableMessage(url: string, cause: string): string {
  return (
    `RabbitMQ is not reachable at ${redactUrl(url)} (${cause}).\n` +
    'Start it with `rabbitmq-server -detached`, or point --amqp-url (or AMQP_URL) at a running broker.'
  );
}

/**
 * Connects to RabbitMQ or fails fast: the first failed attempt (connection refused, wrong credentials)
 * or CONNECT_TIMEOUT_MS without a connection ends with exit code 5 and a message saying what to do.
 * The returned connection would reconnect after a later loss; callers that cannot survive one (an
 * exclusive reply queue dies with its connection) watch `disconnected` themselves.
 */
export async function connectToBroker(
  url: string,
  purpose: string,
  timeoutMs = CONNECT_TIMEOUT_MS,
): Promise<BrokerConnection> {
  const host = os.hostname().replace(/[^A-Za-z0-9._-]/g, '-');
  const connection = new BrokerConnection({
    url,
    connectionName: `icc-${purpose}-${host}-${process.pid}`,
    logger: agentLogger(),
    connectTimeoutMs: timeoutMs,
    reconnect: { initialDelayMs: 500, maxDelayMs: 2_000 },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const offs: (() => void)[] = [];
      const timer = setTimeout(() => settle(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
      const settle = (error?: Error) => {
        clearTimeout(timer);
        for (const off of offs) off();
        if (error) reject(error);
        else resolve();
      };
      offs.push(connection.on('connected', () => settle()));
      offs.push(connection.on('connect-failed', ({ error }) => settle(error)));
      offs.push(
        connection.on('closed', () => settle(connection.lastError ?? new Error('connection closed'))),
      );
      connection.start();
    });
  } catch (error) {
    await connection.close();
    throw new CliError(ExitCode.UNREACHABLE, brokerUnreachableMessage(url, describeAmqpError(error)), {
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
  if (/ACCESS.REFUSED|403/i.test(error.message))
    return `access refused: check the user and password in the URL`;
  return error.message;
}
