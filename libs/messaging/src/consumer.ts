import type { Logger } from '@app/contracts';
import type { ConsumeMessage } from 'amqplib';
import type { BrokerConnection } from './broker-connection';
import type { LiveModel } from './connection-views';
import {
  type ConsumeOptions,
  type ConsumerState,
  type DeliveryHandler,
  afterHandler,
  prefetchProblem,
  resubscribeDelayMs,
} from './consume-policy';
import { type ChannelLease, Delivery } from './delivery';
import { MessagingClosedError, isNotFound } from './errors';
import { InFlight } from './in-flight';
import { errorFields } from './logger';

/** Unique per channel in this process: which channel a delivery's tag belongs to. */
let channelGenerations = 0;

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
  private readonly inFlight = new InFlight();
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
    const problem = prefetchProblem(options.prefetch);
    if (problem) throw new RangeError(problem);
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
    return this.inFlight.drain(timeoutMs);
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
    this.inFlight.markUnsettledLost();
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
    const unsettled = this.inFlight.unsettledOf(lease.channelGeneration);
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
      const next = afterHandler(delivery.settled, failed, this.options.unsettled);
      if (!next) return;
      const context = { queue: this.queue, messageId: delivery.properties.messageId as unknown };
      const policy = next.settle ? { policy: next.settle } : {};
      this.logger.error({ ...context, ...policy, ...(failed ? errorFields(failure) : {}) }, next.message);
      if (next.settle === 'requeue') delivery.nackRequeue();
      else if (next.settle === 'reject') delivery.reject();
    } finally {
      this.inFlight.delete(delivery);
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
    const delay = resubscribeDelayMs(this.options, this.failures);
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
