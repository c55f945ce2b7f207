import { type Channel, type ChannelModel, connect } from 'amqplib';
import { afterEach, beforeEach } from 'vitest';
import type { CellTopology } from '@app/contracts';
import { ChildProcessPool } from './child-processes';
import type { ConductorProcess, LogLine } from './conductor-process';
import { AMQP_URL, withChannel } from './rabbitmq';
import { sleep, waitFor } from './async';
import { RawAmqpClient } from './raw-amqp-client';
import { TestCell } from './test-cell';

/**
 * The afterEach every conductor e2e test needs, as one hook so the order is fixed: on failure print every
 * child's output (the conductors' JSON logs), then kill whatever still runs, then `cleanup` (the cell's
 * queues and folders, clients...), which runs even when killing failed. A hook that outlives its timeout is
 * abandoned half-way, so a campaign whose clean-up stops a file system bed gives it time of its own.
 */
export function conductorPool(
  cleanup: () => Promise<void>,
  hookTimeoutMs?: number,
): ChildProcessPool<unknown> {
  const pool = new ChildProcessPool<unknown>();
  afterEach(async ({ task }) => {
    if (task.result?.state === 'fail')
      console.error(`conductor output of the failed test "${task.name}":\n${pool.report()}`);
    try {
      await pool.killAll();
    } finally {
      await cleanup();
    }
  }, hookTimeoutMs);
  return pool;
}

/**
 * The set-up every conductor e2e file shares: a fresh cell with `nodes` (options as TestCell.create) and
 * a plain amqplib client before each test, the conductor pool, and everything closed and removed after
 * it; `cleanup` runs first, for what the test itself opened (held locks, watchers, taps).
 */
export function conductorTestbed(
  nodes: string[],
  options: { nested?: boolean; cleanup?: () => Promise<void> } = {},
): {
  pool: ChildProcessPool<unknown>;
  cell?: TestCell;
  client?: RawAmqpClient;
} {
  const bed: { pool: ChildProcessPool<unknown>; cell?: TestCell; client?: RawAmqpClient } = {
    pool: conductorPool(async () => {
      try {
        await options.cleanup?.();
      } finally {
        await bed.client?.close();
        await bed.cell?.cleanup();
      }
    }),
  };
  beforeEach(async () => {
    bed.cell = await TestCell.create({ nodes, nested: options.nested });
    bed.client = await RawAmqpClient.open();
  });
  return bed;
}

export type Result = Record<string, unknown> & { requestId: string; status: string; retryable?: boolean };

export function isFinal(result: Result): boolean {
  return result.status !== 'failed' || result.retryable !== true;
}

/**
 * Every result the conductors publish to the cell's events exchange (routing key result.*), collected
 * with plain amqplib through a durable quorum queue of the test's own. Its consumer reconnects by itself,
 * and the queue keeps (persistent) results while the broker or our connection is down, so results are not
 * lost across a broker restart. Results may be duplicated (at-least-once): look them up by requestId.
 */
export class ResultsTap {
  readonly results: Result[] = [];
  private connection: ChannelModel | undefined;
  private closed = false;
  private readonly loop: Promise<void>;
  private readonly ready: Promise<void>;

  private constructor(
    private readonly topology: CellTopology,
    readonly queue: string,
    /** Broker URLs, tried in turn (the nodes of a cluster); the shared broker by default. */
    private readonly urls: string[],
  ) {
    let markReady!: () => void;
    this.ready = new Promise((resolve) => (markReady = resolve));
    this.loop = this.run(markReady);
  }

  static async open(topology: CellTopology, urls: string[] = [AMQP_URL]): Promise<ResultsTap> {
    const tap = new ResultsTap(topology, `${topology.requestQueue.name}.test-results`, urls);
    await Promise.race([
      tap.ready,
      sleep(15_000).then(() => {
        throw new Error('results tap could not subscribe within 15 s');
      }),
    ]);
    return tap;
  }

  private async run(markReady: () => void): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        const connection = await connect(this.urls[attempt % this.urls.length]!, { timeout: 5_000 });
        this.connection = connection;
        const gone = new Promise<void>((resolve) => {
          connection.on('close', () => resolve());
          connection.on('error', () => resolve());
        });
        const channel = await connection.createChannel();
        channel.on('error', () => {});
        await channel.assertQueue(this.queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
        await channel.bindQueue(this.queue, this.topology.eventsExchange.name, 'result.*');
        await channel.consume(this.queue, (m) => {
          if (!m) return;
          this.results.push(JSON.parse(m.content.toString()) as Result);
          channel.ack(m);
        });
        markReady();
        await gone;
      } catch {
        // broker down or restarting: try again shortly
      }
      this.connection = undefined;
      if (!this.closed) await sleep(250);
    }
  }

  of(requestId: string): Result[] {
    return this.results.filter((r) => r.requestId === requestId);
  }

  final(requestId: string): Result | undefined {
    return this.of(requestId).find(isFinal);
  }

  /** Waits until every id has a final result; returns them by id. */
  async waitForFinal(requestIds: string[], timeoutMs: number): Promise<Map<string, Result>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const missing = requestIds.filter((id) => !this.final(id));
      if (missing.length === 0) return new Map(requestIds.map((id) => [id, this.final(id)!]));
      if (Date.now() > deadline)
        throw new Error(
          `no final result within ${timeoutMs} ms for ${missing.length} of ${requestIds.length} requests: ${missing.slice(0, 10).join(', ')}`,
        );
      await sleep(50);
    }
  }

  /** waitForFinal for a campaign: the finals there are by then, and the timeout as a violation. */
  async finalsWithin(
    requestIds: string[],
    timeoutMs: number,
    violations: string[],
  ): Promise<Map<string, Result>> {
    try {
      return await this.waitForFinal(requestIds, timeoutMs);
    } catch (error) {
      violations.push(String(error));
      return new Map(requestIds.flatMap((id) => (this.final(id) ? [[id, this.final(id)!] as const] : [])));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.connection?.close().catch(() => undefined);
    await this.loop;
    if (this.urls[0] === AMQP_URL)
      await withChannel((channel) => channel.deleteQueue(this.queue)).catch(() => undefined);
  }
}

/** Publishes requests as raw JSON with publisher confirms (the broker has them all when this resolves). */
export async function publishConfirmed(
  queue: string,
  messages: Array<{ body: unknown; messageId?: string; replyTo?: string; correlationId?: string }>,
): Promise<void> {
  const connection = await connect(AMQP_URL);
  try {
    const channel = await connection.createConfirmChannel();
    for (const m of messages) {
      channel.sendToQueue(queue, Buffer.from(JSON.stringify(m.body)), {
        contentType: 'application/json',
        persistent: true,
        messageId: m.messageId,
        replyTo: m.replyTo,
        correlationId: m.correlationId,
      });
    }
    await channel.waitForConfirms();
  } finally {
    await connection.close().catch(() => undefined);
  }
}

export interface DeadLetter {
  messageId?: string;
  headers: Record<string, unknown>;
  content: string;
}

/** Takes every message now in the cell's dead-letter queue (acked: they are gone afterwards). */
export async function takeDeadLetters(topology: CellTopology): Promise<DeadLetter[]> {
  return withChannel(async (channel: Channel) => {
    const taken: DeadLetter[] = [];
    for (;;) {
      const m = await channel.get(topology.deadLetterQueue.name, { noAck: true });
      if (!m) return taken;
      taken.push({
        messageId: m.properties.messageId as string | undefined,
        headers: (m.properties.headers ?? {}) as Record<string, unknown>,
        content: m.content.toString(),
      });
    }
  });
}

/** The 'copy request answered' log lines of some conductors. */
export function answeredLines(conductors: ConductorProcess[]): LogLine[] {
  return conductors.flatMap((c) => c.logs().filter((l) => l.msg === 'copy request answered'));
}

/**
 * The 'copy request answered' lines of these requests, once every one is there. A conductor logs that line
 * after it sent the answer, so a test holding the reply may read the log before the line has come through
 * the child's stdout pipe.
 */
export async function answersLogged(
  conductors: ConductorProcess[],
  requestIds: Iterable<string>,
  timeoutMs = 15_000,
): Promise<LogLine[]> {
  const wanted = [...requestIds];
  const lines = await waitFor(
    (): LogLine[] | undefined => {
      const lines = answeredLines(conductors);
      return wanted.every((id) => lines.some((l) => l.requestId === id)) ? lines : undefined;
    },
    `the 'copy request answered' log lines of ${wanted.length} requests (${wanted.slice(0, 10).join(', ')})`,
    timeoutMs,
  );
  return lines!; // waitFor returns only a truthy value
}

/** Log lines at level error or fatal (pino: 50, 60): a healthy run has none. */
export function errorLines(conductors: ConductorProcess[]): string[] {
  return conductors.flatMap((c) =>
    c
      .logs()
      .filter((l) => l.level >= 50)
      .map((l) => JSON.stringify(l)),
  );
}

/**
 * Copies actually made, per `imageId -> destination`, counted from the conductors' JSON logs: answered
 * lines with status completed that did not join a copy already running (coalesced=false).
 */
export function copiesPerDestination(conductors: ConductorProcess[]): Map<string, number> {
  const counts = new Map<string, number>();
  // A copy that finished after its delivery died is published but not answered (its redelivery is).
  const dropped = conductors.flatMap((c) =>
    c.logs().filter((l) => l.msg.startsWith('the delivery died with its channel') && l.status !== undefined),
  );
  for (const line of [...answeredLines(conductors), ...dropped]) {
    if (line.status !== 'completed' || line.coalesced !== false) continue;
    const key = `${String(line.imageId)} -> ${String(line.destination)}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}
