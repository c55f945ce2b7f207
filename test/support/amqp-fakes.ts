import type { Logger } from '@app/contracts';
import { EventEmitter } from 'node:events';
import type { ConsumeMessage, Options } from 'amqplib';
import {
  Delivery,
  type BrokerConnection,
  type BrokerConnectionOptions,
  type ConnectionState,
  type Publisher,
  type PublishProperties,
} from '@app/messaging';

/*
 * In-memory stand-ins for an amqplib channel, a BrokerConnection and a Publisher, for specs that check
 * decisions (ack, requeue, dead-letter, resubscribe, confirm) in milliseconds. They model only what our
 * code calls; the e2e tests keep checking the same paths against a real RabbitMQ.
 */

export interface Published {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish;
}

/** How the fake broker answers one publish on a confirm channel. */
export type ConfirmAnswer = 'ack' | 'nack' | 'return' | 'silent';

let tags = 0;

/** A message as amqplib hands it to a consumer. */
export function consumeMessage(
  body: Buffer | object,
  properties: Partial<ConsumeMessage['properties']> = {},
  fields: Partial<ConsumeMessage['fields']> = {},
): ConsumeMessage {
  return {
    content: Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body)),
    fields: {
      deliveryTag: ++tags,
      redelivered: false,
      exchange: '',
      routingKey: 'requests',
      consumerTag: 'ctag',
      ...fields,
    },
    properties: {
      contentType: undefined,
      contentEncoding: undefined,
      headers: {},
      deliveryMode: 2,
      priority: undefined,
      correlationId: undefined,
      replyTo: undefined,
      expiration: undefined,
      messageId: undefined,
      timestamp: undefined,
      type: undefined,
      userId: undefined,
      appId: undefined,
      clusterId: undefined,
      ...properties,
    },
  };
}

/**
 * One channel (plain or confirm). Settles, consumers and publishes are recorded; like amqplib, calls on
 * a closed channel throw, and the broker side is driven by the test (deliver, cancelByServer, closeByBroker).
 */
export class FakeChannel extends EventEmitter {
  readonly acks: ConsumeMessage[] = [];
  readonly nacks: { message: ConsumeMessage; requeue: boolean }[] = [];
  readonly cancelled: string[] = [];
  readonly published: Published[] = [];
  readonly consumers = new Map<string, { queue: string; onMessage: (m: ConsumeMessage | null) => void }>();
  prefetchCount: number | undefined;
  consumeCalls = 0;
  closed = false;
  /** The next consume() rejects with this error (once). */
  consumeError: Error | undefined;
  /** How the broker answers publishes; default: confirm. */
  answer: (published: Published) => ConfirmAnswer = () => 'ack';
  private readonly pendingConfirms = new Set<(error: unknown) => void>();

  /** `journal`: where settles, cancels and closes are written in order ('channel.ack', ...). */
  constructor(
    readonly confirm: boolean,
    private readonly journal: string[] = [],
  ) {
    super();
  }

  async prefetch(count: number): Promise<void> {
    this.prefetchCount = count;
  }

  async consume(
    queue: string,
    onMessage: (m: ConsumeMessage | null) => void,
  ): Promise<{ consumerTag: string }> {
    this.assertOpen();
    this.consumeCalls += 1;
    const error = this.consumeError;
    this.consumeError = undefined;
    if (error) throw error;
    const consumerTag = `ctag-${this.consumers.size + this.cancelled.length + 1}`;
    this.consumers.set(consumerTag, { queue, onMessage });
    return { consumerTag };
  }

  async cancel(consumerTag: string): Promise<void> {
    this.assertOpen();
    this.consumers.delete(consumerTag);
    this.cancelled.push(consumerTag);
    this.journal.push('channel.cancel');
  }

  ack(message: ConsumeMessage): void {
    this.assertOpen();
    this.acks.push(message);
    this.journal.push('channel.ack');
  }

  nack(message: ConsumeMessage, _allUpTo?: boolean, requeue = true): void {
    this.assertOpen();
    this.nacks.push({ message, requeue });
    this.journal.push(requeue ? 'channel.requeue' : 'channel.reject');
  }

  publish(
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
    callback?: (error: unknown) => void,
  ): boolean {
    this.assertOpen();
    const published = { exchange, routingKey, content, options };
    this.published.push(published);
    const answer = this.answer(published);
    if (answer === 'silent') this.pendingConfirms.add((error) => callback?.(error));
    else
      queueMicrotask(() => {
        // RabbitMQ sends basic.return before the confirm of the same message.
        if (answer === 'return') this.emit('return', { content, properties: { headers: options.headers } });
        callback?.(answer === 'nack' ? new Error('message nacked') : null);
      });
    return true;
  }

  async waitForConfirms(): Promise<void> {}

  /** Queues and exchanges declared on this channel, in order. */
  readonly declared: string[] = [];
  /** Names a passive check does not find (404, and the channel closes, as RabbitMQ does). */
  missing = new Set<string>();

  async assertQueue(name: string): Promise<{ queue: string }> {
    this.assertOpen();
    this.declared.push(`queue ${name}`);
    return { queue: name };
  }

  async assertExchange(name: string): Promise<{ exchange: string }> {
    this.assertOpen();
    this.declared.push(`exchange ${name}`);
    return { exchange: name };
  }

  async checkQueue(name: string): Promise<{ queue: string }> {
    this.passiveCheck(name);
    return { queue: name };
  }

  async checkExchange(name: string): Promise<object> {
    this.passiveCheck(name);
    return {};
  }

  private passiveCheck(name: string): void {
    this.assertOpen();
    if (!this.missing.has(name)) return;
    const error = Object.assign(new Error(`NOT_FOUND - no queue or exchange '${name}'`), { code: 404 });
    this.closeByBroker(error);
    throw error;
  }

  async close(): Promise<void> {
    if (this.closed) throw new Error('Channel closed');
    this.journal.push('channel.close');
    this.shut();
  }

  /** The broker hands `message` to the consumer `consumerTag` (default: the only one). */
  deliver(message: ConsumeMessage, consumerTag?: string): void {
    const consumer = consumerTag ? this.consumers.get(consumerTag) : [...this.consumers.values()][0];
    if (!consumer) throw new Error('FakeChannel.deliver: no consumer on this channel');
    consumer.onMessage(message);
  }

  /** basic.cancel from the server (the queue was deleted). */
  cancelByServer(): void {
    for (const [tag, consumer] of [...this.consumers]) {
      this.consumers.delete(tag);
      consumer.onMessage(null);
    }
  }

  /** The broker closes the channel (e.g. 404 after a publish to a missing exchange). */
  closeByBroker(error: Error & { code?: number }): void {
    this.emit('error', error);
    this.shut();
  }

  private shut(): void {
    this.closed = true;
    this.consumers.clear();
    // amqplib fails outstanding confirms when the channel goes away.
    for (const fail of this.pendingConfirms) fail(new Error('channel closed'));
    this.pendingConfirms.clear();
    this.emit('close');
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('Channel closed');
  }
}

/**
 * A BrokerConnection without a broker: connected at generation 1 from the start, with every channel it
 * opened in `channels`. `reconnect()` and `disconnect()` play a connection loss.
 */
export class FakeBrokerConnection {
  readonly channels: FakeChannel[] = [];
  readonly repairs: string[] = [];
  state: ConnectionState = 'connected';
  generation = 1;
  /** Each channel opened next takes the first of these as its consume() failure. */
  readonly consumeErrors: Error[] = [];
  /** Makes repairTopology() reject (once) with this error. */
  repairError: Error | undefined;
  private readonly events = new EventEmitter();

  /** `calls`: the journal of this connection and its channels, shareable with other fakes. */
  constructor(
    readonly logger: Logger,
    readonly calls: string[] = [],
  ) {}

  /** Typed as the real thing for the code under test. */
  get asConnection(): BrokerConnection {
    return this as unknown as BrokerConnection;
  }

  get lastChannel(): FakeChannel {
    const channel = this.channels.at(-1);
    if (!channel) throw new Error('FakeBrokerConnection: no channel opened yet');
    return channel;
  }

  on(event: string, listener: (payload: unknown) => void): () => void {
    this.events.on(event, listener);
    return () => this.events.off(event, listener);
  }

  /** Listeners registered on `event` (a closed consumer must leave none behind). */
  listenerCount(event: string): number {
    return this.events.listenerCount(event);
  }

  start(): this {
    this.calls.push('broker.start');
    return this;
  }

  current(): { model: { createChannel(): Promise<FakeChannel> }; generation: number } | undefined {
    if (this.state !== 'connected') return undefined;
    return { model: { createChannel: async () => this.open(false) }, generation: this.generation };
  }

  async openConfirmChannel(): Promise<{ channel: FakeChannel; generation: number }> {
    if (this.state !== 'connected') throw new Error('FakeBrokerConnection: not connected');
    return { channel: this.open(true), generation: this.generation };
  }

  async repairTopology(cause: string): Promise<void> {
    this.repairs.push(cause);
    const error = this.repairError;
    this.repairError = undefined;
    if (error) throw error;
  }

  /** The connection dies: every channel closes with it. */
  disconnect(): void {
    this.state = 'disconnected';
    for (const channel of this.channels) if (!channel.closed) void channel.close();
    this.events.emit('disconnected', { reason: new Error('connection lost') });
  }

  /** A new connection comes up (next generation). */
  reconnect(): void {
    this.state = 'connected';
    this.generation += 1;
    this.events.emit('connected', { generation: this.generation, reconnects: this.generation - 1 });
  }

  async close(): Promise<void> {
    this.calls.push('broker.close');
    this.state = 'closed';
    this.events.emit('closed', {});
  }

  private open(confirm: boolean): FakeChannel {
    const channel = new FakeChannel(confirm, this.calls);
    channel.consumeError = this.consumeErrors.shift();
    this.channels.push(channel);
    return channel;
  }
}

/** A real Delivery on a channel of its own, as the consumer would hand it to a handler. */
export function fakeDelivery(
  message: ConsumeMessage,
  logger: Logger,
): { delivery: Delivery; channel: FakeChannel; lease: { open: boolean } } {
  const channel = new FakeChannel(false);
  const lease = { channel, channelGeneration: 1, connectionGeneration: 1, open: true };
  const delivery = new Delivery(lease as never, message, 'requests', logger);
  return { delivery, channel, lease };
}

export interface SentMessage {
  exchange: string;
  routingKey: string;
  body: Buffer | object;
  properties: PublishProperties;
}

/**
 * A Publisher whose broker confirms everything unless `refuse` says otherwise for a publish: then that
 * publish rejects with the returned error (as the real one does after a nack, a return or a timeout).
 */
export class FakePublisher {
  readonly sent: SentMessage[] = [];
  readonly repairs: string[] = [];
  refuse: (message: SentMessage) => Error | undefined = () => undefined;

  constructor(readonly calls: string[] = []) {}

  get asPublisher(): Publisher {
    return this as unknown as Publisher;
  }

  async publish(
    exchange: string,
    routingKey: string,
    body: Buffer | object,
    properties: PublishProperties = {},
  ): Promise<void> {
    const message = { exchange, routingKey, body, properties };
    const error = this.refuse(message);
    if (error) throw error;
    this.sent.push(message);
  }

  sendToQueue(queue: string, body: Buffer | object, properties: PublishProperties = {}): Promise<void> {
    return this.publish('', queue, body, properties);
  }

  async repairTopology(cause: string): Promise<void> {
    this.repairs.push(cause);
  }

  async close(): Promise<void> {
    this.calls.push('publisher.close');
  }

  /** What went to `target` (an exchange name, or a queue name through the default exchange). */
  to(target: string): SentMessage[] {
    return this.sent.filter((m) => (m.exchange === '' ? m.routingKey : m.exchange) === target);
  }
}

/** Lets pending promise callbacks and timers of 0 ms run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * One connection as amqplib's `connect` resolves it, as BrokerConnection sees it: its channels (the
 * topology declaration's first), its events, and `down()` for a lost connection.
 */
export class FakeConnectionModel extends EventEmitter {
  readonly channels: FakeChannel[] = [];
  closed = false;
  /** Passive checks on channels opened from now on do not find these. */
  readonly missing = new Set<string>();
  readonly connection = { serverProperties: { cluster_name: 'rabbit@fake', version: '3.10.8' } };

  async createChannel(): Promise<FakeChannel> {
    return this.open(false);
  }

  async createConfirmChannel(): Promise<FakeChannel> {
    return this.open(true);
  }

  /** The connection is lost: its channels die with it, then 'close' with the reason. */
  down(reason: Error): void {
    for (const channel of this.channels) if (!channel.closed) void channel.close();
    this.emit('close', reason);
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private open(confirm: boolean): FakeChannel {
    const channel = new FakeChannel(confirm);
    channel.missing = new Set(this.missing);
    this.channels.push(channel);
    return channel;
  }
}

/**
 * Stands in for amqplib's `connect` (BrokerConnectionOptions.connect): each call waits until the test
 * lets it succeed (`up`) or fail (`refuse`), so a spec decides when each (re)connection lands.
 */
export function fakeConnect(): {
  connect: NonNullable<BrokerConnectionOptions['connect']>;
  calls: Array<{ url: string; options: Record<string, unknown> }>;
  /** The pending (or next) connect() succeeds; resolves once the conductor side has seen it. */
  up: (prepare?: (model: FakeConnectionModel) => void) => Promise<FakeConnectionModel>;
  /** The pending (or next) connect() fails with `error`. */
  refuse: (error: Error) => Promise<void>;
  /** The latest connection handed out. */
  model: () => FakeConnectionModel;
} {
  const calls: Array<{ url: string; options: Record<string, unknown> }> = [];
  const pending: Array<{ resolve: (m: FakeConnectionModel) => void; reject: (e: Error) => void }> = [];
  let latest: FakeConnectionModel | undefined;
  const connect = ((url: string, options: Record<string, unknown>) => {
    calls.push({ url, options });
    return new Promise<FakeConnectionModel>((resolve, reject) => pending.push({ resolve, reject }));
  }) as unknown as NonNullable<BrokerConnectionOptions['connect']>;
  // A reconnection is dialled after a (short, in specs) backoff: wait for it rather than race it.
  const nextCall = async () => {
    for (let i = 0; i < 2_000 && pending.length === 0; i++) await new Promise((r) => setTimeout(r, 1));
    const call = pending.shift();
    if (!call) throw new Error('fakeConnect: connect() was not called');
    return call;
  };
  const settleAll = async () => {
    for (let i = 0; i < 10; i++) await settle();
  };
  return {
    connect,
    calls,
    up: async (prepare) => {
      const call = await nextCall();
      latest = new FakeConnectionModel();
      prepare?.(latest);
      call.resolve(latest);
      await settleAll();
      return latest;
    },
    refuse: async (error) => {
      (await nextCall()).reject(error);
      await settleAll();
    },
    model: () => {
      if (!latest) throw new Error('fakeConnect: no connection came up yet');
      return latest;
    },
  };
}
