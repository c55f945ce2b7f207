import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { connect, type Channel } from 'amqplib';
import { cellQueues, cellTopology, type CellTopologyOptions } from '@app/contracts';
import { sleep, waitFor } from './async';

const run = promisify(execFile);

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

function redacted(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return url;
  }
}

let reachable: Promise<void> | undefined;

/**
 * Connects once per test process and throws a clear error when the broker is down. Call it in
 * beforeAll: tests that need RabbitMQ must fail, never skip, when it is missing.
 */
export function requireRabbitMq(): Promise<void> {
  reachable ??= (async () => {
    try {
      const connection = await connect(AMQP_URL, { timeout: 5000 });
      await connection.close();
    } catch (error) {
      throw new Error(
        `RabbitMQ is not reachable at ${redacted(AMQP_URL)}: start it with \`rabbitmq-server -detached\` ` +
          `(or set AMQP_URL) - ${(error as Error).message}`,
      );
    }
  })();
  return reachable;
}

/** A cell id no other test (or test run) uses, so tests can run in parallel on one broker. */
export function uniqueCellId(prefix = 't'): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`;
}

/** Runs `fn` on a channel of a short-lived connection of its own. */
export async function withChannel<T>(fn: (channel: Channel) => Promise<T>): Promise<T> {
  const connection = await connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    channel.on('error', () => {}); // failures reject the awaited call
    return await fn(channel);
  } finally {
    await connection.close().catch(() => {});
  }
}

/** Deletes every queue and the exchange of a cell (pass the options the test used for its topology). */
export async function deleteCellTopology(cellId: string, options?: CellTopologyOptions): Promise<void> {
  const topology = cellTopology(cellId, options);
  const queues = cellQueues(topology).map((q) => q.name);
  await withChannel(async (channel) => {
    // Deleting a queue or exchange that does not exist is not an error in RabbitMQ.
    for (const queue of queues) await channel.deleteQueue(queue);
    await channel.deleteExchange(topology.eventsExchange.name);
  });
}

/** Polls a queue with basic.get (auto-ack) until a message arrives or `timeoutMs` passes. */
export async function getOneMessage(queue: string, timeoutMs = 10_000) {
  return withChannel(async (channel) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const message = await channel.get(queue, { noAck: true });
      if (message) return message;
      if (Date.now() > deadline) throw new Error(`no message in ${queue} within ${timeoutMs} ms`);
      await sleep(50);
    }
  });
}

export async function queueMessageCount(queue: string): Promise<number> {
  return withChannel(async (channel) => (await channel.checkQueue(queue)).messageCount);
}

/**
 * Broker-side pids of the connections whose client-provided connection_name is `name`, as printed by
 * `rabbitmqctl list_connections` (what close_connection wants).
 */
export async function connectionPidsNamed(name: string): Promise<string[]> {
  // The text format, because close_connection wants the pid as printed there (<rabbit@host.N.N.N>); the
  // JSON formatter prints it differently. Lines: "<pid>\t[{"connection_name","name"},...]".
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_connections', 'pid', 'client_properties']);
  const needle = `{"connection_name","${name}"}`;
  return stdout
    .split('\n')
    .map((line) => line.split('\t'))
    .filter(([pid, properties]) => pid?.startsWith('<') && properties?.includes(needle))
    .map(([pid]) => pid!);
}

/** Closes connections by broker-side pid (see connectionPidsNamed). */
export async function closeConnectionPids(pids: string[], why = 'closed by test'): Promise<void> {
  for (const pid of pids) await run('rabbitmqctl', ['-q', 'close_connection', pid, why]);
}

/**
 * Closes, from the broker side, only the connections whose client-provided connection_name is `name`
 * (close_all_connections would also cut the connections of tests running in parallel).
 * Returns how many were closed; throws if none matched.
 */
export async function closeConnectionsNamed(name: string, why = 'closed by test'): Promise<number> {
  const pids = await connectionPidsNamed(name);
  if (pids.length === 0) throw new Error(`no broker connection named ${name}`);
  await closeConnectionPids(pids, why);
  return pids.length;
}

/**
 * Stops or starts the RabbitMQ application on the node (the Erlang VM stays up): every connection of
 * every client is closed by stop_app. Whoever calls stop_app must call start_app in a finally.
 */
export async function rabbitmqApp(action: 'stop_app' | 'start_app'): Promise<void> {
  await run('rabbitmqctl', ['-q', action], { timeout: 60_000 });
}

/** Resolves once a client can connect (the broker is up and accepting connections). */
export async function waitForBroker(timeoutMs = 60_000): Promise<void> {
  await waitFor(
    () =>
      connect(AMQP_URL, { timeout: 2000 }).then(
        (connection) => connection.close().then(() => true),
        () => false,
      ),
    'RabbitMQ to accept connections',
    timeoutMs,
  );
}
