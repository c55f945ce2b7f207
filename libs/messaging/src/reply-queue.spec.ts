import { EventEmitter } from 'node:events';
import type { ConsumeMessage } from 'amqplib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BrokerConnection } from './broker-connection';
import { ReplyQueue } from './reply-queue';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** A channel that records what is declared on it and hands out server names q-1, q-2, ... */
class FakeChannel extends EventEmitter {
  static declared = 0;
  /** Exchanges that are not on the broker: checkExchange fails with 404 and closes the channel. */
  static missing = new Set<string>();
  readonly bindings: [string, string, string][] = [];
  consumer?: (message: ConsumeMessage | null) => void;
  queue?: string;
  closed = false;
  async checkExchange(exchange: string) {
    if (!FakeChannel.missing.has(exchange)) return {};
    void this.close();
    throw Object.assign(new Error(`NOT_FOUND - no exchange '${exchange}'`), { code: 404 });
  }
  async assertQueue(name: string, options: { exclusive?: boolean }) {
    expect(name).toBe('');
    expect(options.exclusive).toBe(true);
    this.queue = `q-${++FakeChannel.declared}`;
    return { queue: this.queue, messageCount: 0, consumerCount: 0 };
  }
  async bindQueue(queue: string, exchange: string, key: string) {
    this.bindings.push([queue, exchange, key]);
  }
  async consume(_queue: string, onMessage: (message: ConsumeMessage | null) => void) {
    this.consumer = onMessage;
    return { consumerTag: 'c' };
  }
  async close() {
    this.closed = true;
    this.emit('close');
  }
}

/** Just what ReplyQueue uses of a BrokerConnection: events, the live generation, channels. */
class FakeConnection {
  state: 'connected' | 'disconnected' = 'connected';
  generation = 1;
  readonly channels: FakeChannel[] = [];
  readonly logger = quiet;
  private readonly events = new EventEmitter();
  on(event: string, listener: (payload: unknown) => void): () => void {
    this.events.on(event, listener);
    return () => this.events.off(event, listener);
  }
  private emit(event: string, payload: unknown): void {
    this.events.emit(event, payload);
  }
  current() {
    return this.state === 'connected' ? { model: {}, generation: this.generation } : undefined;
  }
  async openChannel() {
    const channel = new FakeChannel();
    this.channels.push(channel);
    return { channel, generation: this.generation };
  }
  lose() {
    this.state = 'disconnected';
    for (const channel of this.channels) channel.emit('close');
    this.emit('disconnected', { reason: new Error('socket closed') });
  }
  reconnect() {
    this.state = 'connected';
    this.generation += 1;
    this.emit('connected', { generation: this.generation, reconnects: this.generation - 1 });
  }
}

function message(body: string): ConsumeMessage {
  return { content: Buffer.from(body) } as ConsumeMessage;
}

describe('ReplyQueue', () => {
  afterEach(() => {
    vi.useRealTimers();
    FakeChannel.missing.clear();
  });

  function setUp(bindings = [{ exchange: 'icc.c.events', routingKey: 'progress.#' }]) {
    const connection = new FakeConnection();
    const received: string[] = [];
    const events: string[] = [];
    const queue = new ReplyQueue(
      connection as unknown as BrokerConnection,
      (m) => received.push(m.content.toString()),
      { bindings },
    );
    queue.on('lost', ({ reason }) => events.push(`lost: ${reason.message}`));
    queue.on('renewed', ({ queue: name, generation }) => events.push(`renewed: ${name} @${generation}`));
    queue.on('failed', ({ error }) => events.push(`failed: ${error.message}`));
    return { connection, queue, received, events };
  }

  it('declares, binds and consumes an exclusive queue, and hands over what arrives', async () => {
    const { connection, queue, received } = setUp();
    const name = await queue.open();
    expect(queue.name).toBe(name);
    const [channel] = connection.channels;
    expect(channel!.bindings).toEqual([[name, 'icc.c.events', 'progress.#']]);
    channel!.consumer!(message('one'));
    channel!.consumer!(null); // a server-side cancel delivers null: ignored
    expect(received).toEqual(['one']);
  });

  it('after a loss, is declared again on the new connection under a new name, and says so', async () => {
    vi.useFakeTimers();
    const { connection, queue, events } = setUp();
    const first = await queue.open();
    connection.lose();
    expect(queue.name).toBeUndefined();
    await vi.advanceTimersByTimeAsync(500); // the channel's close was the connection's: not a failure
    connection.reconnect();
    await vi.advanceTimersByTimeAsync(0);
    const second = queue.name!;
    expect(second).not.toBe(first);
    expect(events).toEqual(['lost: socket closed', `renewed: ${second} @2`]);
    expect(connection.channels[1]!.bindings).toEqual([[second, 'icc.c.events', 'progress.#']]);
  });

  it('after a reconnect to a broker without its exchange yet, waits for the exchange instead of failing', async () => {
    vi.useFakeTimers();
    const { connection, queue, events } = setUp();
    await queue.open();
    const declaredBefore = FakeChannel.declared;
    connection.lose();
    FakeChannel.missing.add('icc.c.events'); // the next broker of the list: no conductor declared it yet
    connection.reconnect();
    await vi.advanceTimersByTimeAsync(250 + 500 + 1000); // three tries, each a 404
    expect(events).toEqual(['lost: socket closed']);
    expect(queue.name).toBeUndefined();
    FakeChannel.missing.clear(); // a conductor has declared its topology there
    await vi.advanceTimersByTimeAsync(2000);
    expect(events).toEqual(['lost: socket closed', `renewed: ${queue.name} @2`]);
    // The exchange is checked before the queue is declared: the failed tries left no queue behind.
    expect(FakeChannel.declared - declaredBefore).toBe(1);
    expect(connection.channels.at(-1)!.bindings).toEqual([[queue.name, 'icc.c.events', 'progress.#']]);
  });

  it('fails when its channel dies while the connection lives on (e.g. the queue was deleted)', async () => {
    vi.useFakeTimers();
    const { connection, queue, events } = setUp([]);
    await queue.open();
    connection.channels[0]!.emit('close');
    await vi.advanceTimersByTimeAsync(500);
    expect(events).toEqual(['failed: the reply queue channel was closed by the broker']);
    expect(queue.name).toBeUndefined();
  });

  it('after close(), neither declares again nor reports', async () => {
    vi.useFakeTimers();
    const { connection, queue, events } = setUp([]);
    await queue.open();
    await queue.close();
    connection.lose();
    connection.reconnect();
    await vi.advanceTimersByTimeAsync(500);
    expect(events).toEqual([]);
    expect(connection.channels).toHaveLength(1);
    await expect(queue.open()).rejects.toThrow(/closed/);
  });
});
