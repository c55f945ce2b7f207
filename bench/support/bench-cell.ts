/*
 * What the end-to-end benchmarks share, on their own (bench/ uses no test code): a temporary cell,
 * conductors as real processes (the compiled app), a plain amqplib requester, and results written to
 * bench/results/<name>.json.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Channel, type ChannelModel, connect } from 'amqplib';
import { type CellTopology, cellQueues, cellTopology } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { declareCellTopology } from '@app/messaging';
import { writeRandomFile } from './random-file';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const RESULTS_DIR = path.resolve(__dirname, '..', '..', '..', 'bench', 'results');
/** The compiled conductor: bench runs from dist/bench/ (npm run bench builds first). */
const CONDUCTOR_MAIN = path.resolve(__dirname, '..', '..', 'apps', 'conductor', 'src', 'main.js');
const RETRY_DELAYS_MS = [200, 500, 1000];

export async function writeResults(name: string, report: unknown): Promise<string> {
  await fsp.mkdir(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.json`);
  await fsp.writeFile(file, JSON.stringify(report, null, 2));
  return file;
}

async function withChannel<T>(fn: (channel: Channel) => Promise<T>): Promise<T> {
  const connection = await connect(AMQP_URL);
  try {
    return await fn(await connection.createChannel());
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/** A temporary cell: its own CACHE_ROOT with registered nodes, its own queues, all removed afterwards. */
export class BenchCell {
  readonly store: ImageStore;
  readonly topology: CellTopology;

  private constructor(
    readonly cellId: string,
    readonly root: string,
  ) {
    this.store = new ImageStore({ root, fsync: false });
    this.topology = cellTopology(cellId, { retryDelaysMs: RETRY_DELAYS_MS });
  }

  /** `root`: an empty folder to use as CACHE_ROOT (removed by cleanup()); a fresh temp folder by default. */
  static async create(nodes: string[], root?: string): Promise<BenchCell> {
    root ??= await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-bench-'));
    const cell = new BenchCell(`bench-${randomBytes(5).toString('hex')}`, root);
    for (const node of nodes) await cell.store.markers.registerNode(node, 'bench');
    await withChannel((channel) => declareCellTopology(channel, cell.topology));
    return cell;
  }

  /** Puts a random verified image of `bytes` bytes into a node's cache; returns its checksum. */
  async seed(node: string, imageId: string, bytes: number): Promise<{ sha256: string; size: number }> {
    const file = path.join(this.root, `.seed-${imageId}`);
    await writeRandomFile(file, bytes);
    const { sha256 } = await this.store.imports.importImage(node, imageId, file);
    await fsp.rm(file);
    return { sha256, size: bytes };
  }

  conductorEnv(overrides: Record<string, string> = {}): Record<string, string> {
    return {
      CELL_ID: this.cellId,
      CACHE_ROOT: this.root,
      AMQP_URL,
      ADMIN_PORT: '0',
      COPY_CONCURRENCY: '4',
      LOCK_STALE_MS: '20000',
      LOCK_UPDATE_MS: '4000',
      LOCK_SAFETY_MARGIN_MS: '5000',
      LOCK_POLL_MS: '25',
      LOCK_WAIT_MS: '20000',
      RETRY_DELAYS_MS: RETRY_DELAYS_MS.join(','),
      SHUTDOWN_GRACE_MS: '10000',
      LOG_LEVEL: 'info',
      ...overrides,
    };
  }

  async cleanup(): Promise<void> {
    const t = this.topology;
    await withChannel(async (channel) => {
      for (const queue of cellQueues(t)) await channel.deleteQueue(queue.name);
      await channel.deleteExchange(t.eventsExchange.name);
    }).catch(() => undefined);
    await fsp.rm(this.root, { recursive: true, force: true });
  }
}

/** A conductor process; `script` is another compiled entry point (bench/support/lock-baseline-conductor). */
export class BenchConductor {
  private readonly output: string[] = [];
  readonly exitedPromise: Promise<unknown>;

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => this.output.push(d.toString()));
    child.stderr!.on('data', (d: Buffer) => this.output.push(d.toString()));
    this.exitedPromise = new Promise((resolve) =>
      child.on('exit', (code, signal) => resolve({ code, signal })),
    );
  }

  /** `execArgv`: node's own flags for the child (--cpu-prof is refused in NODE_OPTIONS). */
  static start(
    env: Record<string, string>,
    script = CONDUCTOR_MAIN,
    execArgv: string[] = [],
  ): BenchConductor {
    return new BenchConductor(
      fork(script, [], {
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        env: { ...process.env, ...env },
        execArgv,
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The admin endpoint's port, from the 'conductor started' log line (call after ready()). */
  adminPort(): number {
    const line = this.output
      .join('')
      .split('\n')
      .find((l) => l.includes('"msg":"conductor started"'));
    if (!line) throw new Error(`conductor ${this.pid} has not logged its start yet`);
    return (JSON.parse(line) as { adminPort: number }).adminPort;
  }

  /** Waits until it is started and its consumer is subscribed. */
  async ready(timeoutMs = 60_000): Promise<this> {
    const deadline = Date.now() + timeoutMs;
    const logged = (msg: string) => this.output.join('').includes(`"msg":"${msg}"`);
    while (!(logged('conductor started') && logged('consuming'))) {
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`conductor ${this.pid} exited before it was ready:\n${this.output.join('')}`);
      if (Date.now() > deadline) throw new Error(`conductor ${this.pid} not ready within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this;
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  exited(): Promise<unknown> {
    return this.exitedPromise;
  }

  kill(): Promise<unknown> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    return this.exitedPromise;
  }
}

export type StartConductor = (
  env?: Record<string, string>,
  script?: string,
  execArgv?: string[],
) => Promise<BenchConductor>;

/** Runs `fn` with a fresh cell and the conductors it starts, and cleans both up. */
export async function withCell<T>(
  nodes: string[],
  fn: (cell: BenchCell, startConductor: StartConductor) => Promise<T>,
): Promise<T> {
  const cell = await BenchCell.create(nodes);
  const conductors: BenchConductor[] = [];
  try {
    return await fn(cell, async (env = {}, script, execArgv) => {
      const conductor = BenchConductor.start(cell.conductorEnv(env), script, execArgv);
      conductors.push(conductor);
      return conductor.ready();
    });
  } finally {
    await Promise.all(conductors.map((c) => c.kill()));
    await cell.cleanup();
  }
}

export interface BenchReply {
  correlationId: string;
  /** performance.now() when it arrived. */
  receivedAt: number;
  body: Record<string, unknown>;
}

/** A requester with plain amqplib (as any client of docs/protocol.md): raw JSON out, replies on its own queue. */
export class BenchRequester {
  readonly replies: BenchReply[] = [];
  private readonly finals = new Map<string, Record<string, unknown>>();

  private constructor(
    private readonly connection: ChannelModel,
    private readonly channel: Channel,
    private readonly replyQueue: string,
  ) {}

  static async open(): Promise<BenchRequester> {
    const connection = await connect(AMQP_URL);
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    const client = new BenchRequester(connection, channel, queue);
    await channel.consume(
      queue,
      (m) => {
        if (!m) return;
        const body = JSON.parse(m.content.toString()) as Record<string, unknown>;
        const reply = {
          correlationId: String(m.properties.correlationId),
          receivedAt: performance.now(),
          body,
        };
        client.replies.push(reply);
        if (body.retryable !== true && !client.finals.has(reply.correlationId))
          client.finals.set(reply.correlationId, body);
      },
      { noAck: true },
    );
    return client;
  }

  /** Publishes `body` as JSON with this client's reply queue; returns the correlation id. */
  send(queue: string, body: object): string {
    const correlationId = randomUUID();
    this.channel.sendToQueue(queue, Buffer.from(JSON.stringify(body)), {
      contentType: 'application/json',
      persistent: true,
      correlationId,
      replyTo: this.replyQueue,
    });
    return correlationId;
  }

  /** The final answer for a correlation id (a failure with retryable: true is not final). */
  async finalReply(correlationId: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = this.finals.get(correlationId);
      if (reply) return reply;
      if (Date.now() > deadline)
        throw new Error(`no final reply for ${correlationId} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async close(): Promise<void> {
    await this.connection.close().catch(() => undefined);
  }
}

/** Publishes `bodies` and resolves when every one has a final reply; returns the elapsed ms. */
export async function requestAll(
  client: BenchRequester,
  queue: string,
  bodies: object[],
  timeoutMs = 600_000,
): Promise<{ ms: number; replies: Record<string, unknown>[] }> {
  const started = performance.now();
  const ids = bodies.map((b) => client.send(queue, b));
  const replies: Record<string, unknown>[] = [];
  for (const id of ids) replies.push(await client.finalReply(id, timeoutMs));
  return { ms: performance.now() - started, replies };
}
