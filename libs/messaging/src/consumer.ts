import type { Logger } from '@app/contracts';
import type { Channel, ConsumeMessage, MessageProperties } from 'amqplib';
import type { BrokerConnection } from './broker-connection';
import type { LiveModel } from './connection-views';
import { MessagingClosedError, isNotFound } from './errors';
import { errorFields } from './logger';

export type DeliveryOutcome = 'acked' | 'requeued' | 'rejected' | 'lost';
export type ConsumerState = 'active' | 'paused' | 'closed';

/**
 * The handler owns the delivery until its promise settles and must settle it (ack, nackRequeue, or
 * publish elsewhere then ack) before that. A handler that throws or returns without settling is a bug:
 * the delivery then gets the `unsettled` policy.
 */
export type DeliveryHandler = (delivery: Delivery) => Promise<void> | void;

export interface ConsumeOptions {
  /** Unacked deliveries the broker may hand us at once: the copy concurrency. */
  prefetch: number;
  /**
   * What happens to a delivery whose handler threw or returned without settling it. 'reject' (default):
   * rejected without requeue, so the queue's dead-letter exchange moves it to the dead-letter queue
   * (visible, no hot loop). 'requeue': handed back; it comes straight back, and only RabbitMQ 3.x's
   * x-delivery-limit ends the loop (4.x does not count requeues), so use it with care.
   */
  unsettled?: 'reject' | 'requeue';
  /** First delay before re-subscribing after the broker closed our channel or cancelled us; doubles up to 10 s. */
  resubscribeDelayMs?: number;
  /** Defaults to the connection's logger. */
  logger?: Logger;
}

interface ChannelLease {
  readonly channel: Channel;
  /** Unique per channel in this process: which channel a delivery's tag belongs to. */
  readonly channelGeneration: number;
  readonly connectionGeneration: number;
  open: boolean;
  consumerTag?: string;
  closeReason?: Error;
}

let channelGenerations = 0;

/**
 * One message handed to a handler. Settling is safe to attempt at any time: delivery tags belong to one
 * channel, and acking on another channel (or twice) would make the broker close the channel with
 * PRECONDITION_FAILED, so a delivery whose channel is gone, or that is already settled, turns the call into
 * a logged no-op that returns false. The broker redelivers what was not acked.
 */
export class Delivery {
  private outcomeValue: DeliveryOutcome | undefined;

  constructor(
    private readonly lease: ChannelLease,
    /** The raw amqplib message: content, fields (deliveryTag, redelivered, routingKey), properties. */
    readonly message: ConsumeMessage,
    private readonly queue: string,
    private readonly logger: Logger,
  ) {}

  get channelGeneration(): number {
    return this.lease.channelGeneration;
  }

  get content(): Buffer {
    return this.message.content;
  }

  get properties(): MessageProperties {
    return this.message.properties;
  }

  get headers(): Record<string, unknown> {
    return (this.message.properties.headers ?? {}) as Record<string, unknown>;
  }

  get redelivered(): boolean {
    return this.message.fields.redelivered;
  }

  get outcome(): DeliveryOutcome | undefined {
    return this.outcomeValue;
  }

  get settled(): boolean {
    return this.outcomeValue !== undefined;
  }

  /** True while an ack would still reach the broker. */
  get channelOpen(): boolean {
    return this.lease.open;
  }

  ack(): boolean {
    return this.settle('acked');
  }

  /** Hands the message back to the queue (for someone else, or for us later). */
  nackRequeue(): boolean {
    return this.settle('requeued');
  }

  /**
   * Rejects without requeue: the queue's dead-letter exchange takes it, with only RabbitMQ's x-death
   * headers. Prefer publishToDeadLetter() + ack(), which records our reason.
   */
  reject(): boolean {
    return this.settle('rejected');
  }

  /** Marks the delivery lost without telling the broker (its channel died); used by the consumer. */
  markLost(): void {
    this.outcomeValue ??= 'lost';
  }

  private settle(outcome: Exclude<DeliveryOutcome, 'lost'>): boolean {
    const context = {
      queue: this.queue,
      deliveryTag: this.message.fields.deliveryTag,
      messageId: this.message.properties.messageId as unknown,
      channelGeneration: this.lease.channelGeneration,
    };
    if (this.outcomeValue !== undefined) {
      if (this.outcomeValue !== 'lost') {
        this.logger.warn(
          { ...context, outcome, previous: this.outcomeValue },
          'delivery already settled; ignored',
        );
      }
      return false;
    }
    if (!this.lease.open) {
      this.outcomeValue = 'lost';
      this.logger.warn(
        { ...context, outcome },
        "the delivery's channel is gone; nothing sent, the broker redelivers the message",
      );
      return false;
    }
    try {
      if (outcome === 'acked') this.lease.channel.ack(this.message);
      else this.lease.channel.nack(this.message, false, outcome === 'requeued');
    } catch (error) {
      // The channel closed and amqplib noticed before our 'close' listener ran.
      this.outcomeValue = 'lost';
      this.logger.warn(
        { ...context, outcome, ...errorFields(error) },
        'could not settle the delivery; the broker redelivers it',
      );
      return false;
    }
    this.outcomeValue = outcome;
    return true;
  }
}

/**
 * Consumes one queue with manual acks on its own channel, and keeps consuming across reconnects and
 * broker-side channel closures until paused or closed.
 *
 * Why a channel per consumer: prefetch is per channel consumer, and a channel the broker closes (ack
 * timeout, a bad ack) takes only this consumer's unacked messages back to the queue.
 */
export class Consumer {
  private stateValue: ConsumerState = 'active';
  private lease: ChannelLease | undefined;
  private readonly inFlight = new Set<Delivery>();
  private drainWaiters: (() => void)[] = [];
  private loop: Promise<Error | undefined> | undefined;
  private subscribeRequested = false;
  private resubscribeTimer: NodeJS.Timeout | undefined;
  private failures = 0;
  private readonly logger: Logger;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly connection: BrokerConnection,
    readonly queue: string,
    private readonly options: ConsumeOptions,
    private readonly handler: DeliveryHandler,
  ) {
    if (!Number.isInteger(options.prefetch) || options.prefetch < 1) {
      throw new RangeError(`prefetch must be a positive integer (got ${options.prefetch})`);
    }
    this.logger = options.logger ?? connection.logger;
    const offConnected = connection.on('connected', () => {
      this.failures = 0;
      void this.ensureSubscribed();
    });
    const offClosed = connection.on('closed', () => this.clearResubscribeTimer());
    this.unsubscribe = () => {
      offConnected();
      offClosed();
    };
  }

  get state(): ConsumerState {
    return this.stateValue;
  }

  /** Deliveries whose handler is still running or that are not settled yet. */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** True while the broker knows us as a consumer of the queue. */
  get subscribed(): boolean {
    return this.lease?.open === true && this.lease.consumerTag !== undefined;
  }

  get channelGeneration(): number | undefined {
    return this.lease?.channelGeneration;
  }

  /**
   * Subscribes now if connected, and resolves then (rejecting if the broker refuses, e.g. the queue does
   * not exist - a retry is scheduled anyway). When not connected it resolves at once; the consumer
   * subscribes on the next `connected`.
   */
  async start(): Promise<void> {
    if (this.stateValue === 'closed') throw new MessagingClosedError('Consumer');
    const error = await this.ensureSubscribed();
    if (error) throw error;
  }

  /**
   * Stops taking new deliveries (basic.cancel). The channel stays open, so deliveries in flight can still
   * be acked or handed back; a delivery that raced the cancel is handed back at once.
   */
  async pause(): Promise<void> {
    if (this.stateValue !== 'active') return;
    this.stateValue = 'paused';
    this.clearResubscribeTimer();
    await this.loop;
    await this.cancelConsumer();
  }

  async resume(): Promise<void> {
    if (this.stateValue !== 'paused') return;
    this.stateValue = 'active';
    const error = await this.ensureSubscribed();
    if (error) throw error;
  }

  /** Resolves true once nothing is in flight, false if `timeoutMs` passed first. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.inFlight.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.drainWaiters.push(done);
    });
  }

  /**
   * Cancels and closes the channel: unsettled deliveries go back to the queue (redelivered, flagged so).
   * For a graceful stop: pause(), drain(), then close().
   */
  async close(): Promise<void> {
    if (this.stateValue === 'closed') return;
    this.stateValue = 'closed';
    this.clearResubscribeTimer();
    this.unsubscribe();
    await this.loop;
    await this.cancelConsumer();
    const lease = this.lease;
    if (lease?.open) {
      lease.open = false;
      await lease.channel.close().catch((error: unknown) => {
        this.logger.debug(
          { queue: this.queue, ...errorFields(error) },
          'consumer channel close failed (already closed)',
        );
      });
    }
    for (const delivery of this.inFlight) if (!delivery.settled) delivery.markLost();
  }

  /**
   * Runs the subscribe loop unless it is already running; a request made while it runs makes it go
   * round once more (a reconnect can happen during a subscribe). Never rejects: returns the error.
   */
  private ensureSubscribed(): Promise<Error | undefined> {
    this.subscribeRequested = true;
    this.loop ??= this.subscribeLoop().finally(() => {
      this.loop = undefined;
    });
    return this.loop;
  }

  private async subscribeLoop(): Promise<Error | undefined> {
    let lastError: Error | undefined;
    while (this.subscribeRequested) {
      this.subscribeRequested = false;
      try {
        await this.subscribeOnce();
        lastError = undefined;
      } catch (error) {
        lastError = error instanceof Error ? error : new Error(String(error));
        this.logger.warn({ queue: this.queue, ...errorFields(error) }, 'could not subscribe; retrying');
        // A queue missing at subscribe time would be missing for ever: nothing else declares it.
        if (isNotFound(error))
          await this.connection
            .repairTopology(`subscribe to ${this.queue}: queue not found`, undefined, this.queue)
            .catch(() => {});
        this.scheduleResubscribe();
      }
    }
    return lastError;
  }

  private async subscribeOnce(): Promise<void> {
    if (this.stateValue !== 'active') return;
    const live = this.connection.current();
    if (!live) return; // the next 'connected' event brings us back
    let lease = this.lease;
    if (!lease?.open || lease.connectionGeneration !== live.generation) lease = await this.openLease(live);
    if (this.stateValue !== 'active' || !lease.open || lease.consumerTag !== undefined) return;
    const current = lease;
    const { consumerTag } = await current.channel.consume(
      this.queue,
      (message) => this.onMessage(current, message),
      {
        noAck: false,
      },
    );
    current.consumerTag = consumerTag;
    this.failures = 0;
    this.logger.info(
      { queue: this.queue, prefetch: this.options.prefetch, channelGeneration: current.channelGeneration },
      'consuming',
    );
  }

  private async openLease(live: LiveModel): Promise<ChannelLease> {
    const channel = await live.model.createChannel();
    const lease: ChannelLease = {
      channel,
      channelGeneration: ++channelGenerations,
      connectionGeneration: live.generation,
      open: true,
    };
    channel.on('error', (error: Error) => {
      lease.closeReason = error;
    });
    channel.on('close', () => this.onLeaseClosed(lease));
    channel.on('handler-error', (error: Error, event: string) => {
      this.logger.error(
        { queue: this.queue, ...errorFields(error), event },
        'a consumer channel listener threw',
      );
    });
    // Per-consumer prefetch (global=false): it applies to the consumer created next on this channel.
    await channel.prefetch(this.options.prefetch);
    this.lease = lease;
    return lease;
  }

  private onLeaseClosed(lease: ChannelLease): void {
    lease.open = false;
    lease.consumerTag = undefined;
    if (this.lease !== lease || this.stateValue === 'closed') return;
    const unsettled = [...this.inFlight].filter(
      (d) => !d.settled && d.channelGeneration === lease.channelGeneration,
    );
    this.logger.warn(
      {
        queue: this.queue,
        channelGeneration: lease.channelGeneration,
        reason: lease.closeReason?.message ?? 'connection lost',
        unsettled: unsettled.length,
      },
      'consumer channel closed; its unsettled deliveries go back to the queue',
    );
    // A connection loss is handled by the 'connected' event; a channel closed under a live connection
    // (consumer ack timeout, a protocol error) is re-opened here.
    if (this.stateValue === 'active') this.scheduleResubscribe();
  }

  private onMessage(lease: ChannelLease, message: ConsumeMessage | null): void {
    // Runs inside amqplib's frame handling: it must not throw.
    try {
      if (message === null) {
        lease.consumerTag = undefined;
        this.logger.warn(
          { queue: this.queue },
          'RabbitMQ cancelled the consumer (queue deleted?); declaring the topology again and re-subscribing',
        );
        if (this.lease === lease && this.stateValue === 'active')
          void this.repairAndResubscribe(`consumer of ${this.queue} cancelled by the server`);
        return;
      }
      const delivery = new Delivery(lease, message, this.queue, this.logger);
      if (this.stateValue !== 'active') {
        // Sent by the broker before it processed our cancel: not ours to start any more.
        delivery.nackRequeue();
        return;
      }
      this.inFlight.add(delivery);
      void this.run(delivery);
    } catch (error) {
      this.logger.error({ queue: this.queue, ...errorFields(error) }, 'failed to dispatch a delivery');
    }
  }

  private async run(delivery: Delivery): Promise<void> {
    let failure: unknown;
    let failed = false;
    try {
      await this.handler(delivery);
    } catch (error) {
      failure = error;
      failed = true;
    }
    try {
      const context = { queue: this.queue, messageId: delivery.properties.messageId as unknown };
      if (!delivery.settled) {
        const policy = this.options.unsettled ?? 'reject';
        this.logger.error(
          { ...context, policy, ...(failed ? errorFields(failure) : {}) },
          failed
            ? 'handler threw without settling the delivery'
            : 'handler returned without settling the delivery',
        );
        if (policy === 'requeue') delivery.nackRequeue();
        else delivery.reject();
      } else if (failed) {
        this.logger.error(
          { ...context, ...errorFields(failure) },
          'handler threw after settling the delivery',
        );
      }
    } finally {
      this.inFlight.delete(delivery);
      if (this.inFlight.size === 0) {
        const waiters = this.drainWaiters;
        this.drainWaiters = [];
        for (const waiter of waiters) waiter();
      }
    }
  }

  private async cancelConsumer(): Promise<void> {
    const lease = this.lease;
    const tag = lease?.consumerTag;
    if (!lease?.open || tag === undefined) return;
    lease.consumerTag = undefined;
    try {
      await lease.channel.cancel(tag);
    } catch (error) {
      this.logger.debug({ queue: this.queue, ...errorFields(error) }, 'cancel failed (channel already gone)');
    }
  }

  /** After a server-side cancel: the queue is most likely gone; declare it again, then subscribe at once. */
  private async repairAndResubscribe(cause: string): Promise<void> {
    try {
      await this.connection.repairTopology(cause, undefined, this.queue);
    } catch {
      this.scheduleResubscribe(); // logged by the connection; the subscribe loop retries with backoff
      return;
    }
    if (this.stateValue === 'active') void this.ensureSubscribed();
  }

  private scheduleResubscribe(): void {
    if (this.resubscribeTimer || this.stateValue !== 'active' || this.connection.state === 'closed') return;
    const delay = Math.min((this.options.resubscribeDelayMs ?? 1000) * 2 ** this.failures, 10_000);
    this.failures += 1;
    this.resubscribeTimer = setTimeout(() => {
      this.resubscribeTimer = undefined;
      void this.ensureSubscribed();
    }, delay);
  }

  private clearResubscribeTimer(): void {
    clearTimeout(this.resubscribeTimer);
    this.resubscribeTimer = undefined;
  }
}

/** Creates a consumer and starts it (see Consumer.start for what "started" means while disconnected). */
export async function consume(
  connection: BrokerConnection,
  queue: string,
  options: ConsumeOptions,
  handler: DeliveryHandler,
): Promise<Consumer> {
  const consumer = new Consumer(connection, queue, options, handler);
  try {
    await consumer.start();
  } catch (error) {
    await consumer.close();
    throw error;
  }
  return consumer;
}
