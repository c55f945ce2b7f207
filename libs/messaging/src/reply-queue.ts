import type { Logger } from '@app/contracts';
import type { Channel, ConsumeMessage } from 'amqplib';
import type { BrokerConnection } from './broker-connection';
import { MessagingClosedError, isNotFound } from './errors';
import { errorFields } from './logger';
import { TypedEvents } from './typed-events';

export interface ReplyQueueEvents {
  /**
   * Declared again on a new connection, under a new name: whatever was published to the old name is
   * gone, so a requester sends again what it still waits for (with reply_to = `queue`).
   */
  renewed: { queue: string; generation: number };
  /** The queue died with its connection; `renewed` follows once a connection is back. */
  lost: { reason: Error };
  /**
   * The queue could not be declared again on a live connection, or its channel died while the connection
   * lived on (e.g. the queue was deleted): nothing more arrives on it.
   */
  failed: { error: Error };
}

export interface ReplyQueueOptions {
  /** Bind the queue to these exchanges (e.g. a cell's events exchange with `progress.#`). */
  bindings?: readonly { exchange: string; routingKey: string }[];
  /** How long open() waits for a connection. Default 10 s. */
  waitForConnectionMs?: number;
  /**
   * After a reconnect, how long to wait before trying again when an exchange to bind to is missing there
   * (first wait; it doubles up to 5 s). Default 250 ms.
   */
  missingExchangeRetryMs?: number;
  logger?: Logger;
}

/**
 * An exclusive, server-named, auto-ack queue that a requester reads its answers (or events) from, kept
 * alive across reconnects. Exclusive queues die with their connection; after each reconnect this one is
 * declared (and bound) again and `renewed` says its new name. Messages published to the old name while
 * the connection was down are lost: the protocol makes requests idempotent, so the requester's answer to
 * `renewed` is to send again what it still waits for.
 */
export class ReplyQueue {
  private readonly events: TypedEvents<ReplyQueueEvents>;
  private readonly logger: Logger;
  private channel: Channel | undefined;
  private queueName: string | undefined;
  private opened = false;
  private closed = false;
  private reopening: Promise<void> | undefined;
  private readonly offConnection: (() => void)[];

  constructor(
    private readonly connection: BrokerConnection,
    private readonly onMessage: (message: ConsumeMessage) => void,
    private readonly options: ReplyQueueOptions = {},
  ) {
    this.logger = options.logger ?? connection.logger;
    this.events = new TypedEvents(this.logger);
    this.offConnection = [
      connection.on('disconnected', ({ reason }) => {
        if (!this.opened || this.closed) return;
        this.queueName = undefined;
        this.channel = undefined;
        this.events.emit('lost', { reason });
      }),
      connection.on('connected', () => {
        if (!this.opened || this.closed || this.reopening) return;
        this.reopening = this.renew().finally(() => (this.reopening = undefined));
      }),
    ];
  }

  /** The current queue's name; undefined while disconnected. */
  get name(): string | undefined {
    return this.queueName;
  }

  on<K extends keyof ReplyQueueEvents>(
    event: K,
    listener: (payload: ReplyQueueEvents[K]) => void,
  ): () => void {
    return this.events.on(event, listener);
  }

  /** Declares, binds and consumes on the live connection; resolves with the queue's name. */
  async open(): Promise<string> {
    if (this.closed) throw new MessagingClosedError('ReplyQueue');
    const queue = await this.declare();
    this.opened = true;
    return queue;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const off of this.offConnection) off();
    const channel = this.channel;
    this.channel = undefined;
    this.queueName = undefined;
    await channel?.close().catch(() => {});
  }

  /**
   * Declares the queue again on the connection that just came back. An exchange to bind to may be missing
   * there for a while: after a fail-over to a broker that is not clustered with the old one, it appears
   * once a conductor of the cell has declared its topology on that broker, and a requester that gave up
   * meanwhile would lose the answer to a request it sent. So a missing exchange is waited for (with
   * backoff, for as long as the connection lives); any other error is a failure of the queue.
   */
  private async renew(): Promise<void> {
    let delayMs = this.options.missingExchangeRetryMs ?? 250;
    for (let attempt = 0; ; attempt++) {
      try {
        const queue = await this.declare();
        this.events.emit('renewed', { queue, generation: this.connection.current()?.generation ?? 0 });
        return;
      } catch (error) {
        // Lost again before it was declared: the next 'connected' tries again.
        if (this.connection.state !== 'connected' || this.closed) return;
        if (!isNotFound(error)) {
          this.events.emit('failed', { error: asError(error) });
          return;
        }
        if (attempt === 0)
          this.logger.warn(
            { ...errorFields(error) },
            'reconnected, but an exchange the reply queue is bound to is not on this broker yet: waiting for it',
          );
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, 5_000);
      }
    }
  }

  private async declare(): Promise<string> {
    const { channel, generation } = await this.connection.openChannel(
      this.options.waitForConnectionMs ?? 10_000,
    );
    channel.on('error', (error: Error) => {
      this.logger.debug({ ...errorFields(error) }, 'reply queue channel error');
    });
    channel.on('close', () => {
      // A lost connection closes its channels before it reports the loss: judge a moment later, and only
      // a channel that died while its own connection lived on is a failure of this queue.
      setTimeout(() => {
        if (this.closed || this.channel !== channel) return;
        if (this.connection.current()?.generation !== generation) return;
        this.channel = undefined;
        this.queueName = undefined;
        this.events.emit('failed', { error: new Error('the reply queue channel was closed by the broker') });
      }, 200);
    });
    // Checked before the queue exists: a 404 then closes the channel with nothing declared, where a failed
    // bind would leave an exclusive queue behind on the connection for each try.
    for (const binding of this.options.bindings ?? []) await channel.checkExchange(binding.exchange);
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    for (const binding of this.options.bindings ?? [])
      await channel.bindQueue(queue, binding.exchange, binding.routingKey);
    await channel.consume(queue, (message) => message && this.onMessage(message), { noAck: true });
    if (this.closed) {
      await channel.close().catch(() => {});
      throw new MessagingClosedError('ReplyQueue');
    }
    this.channel = channel;
    this.queueName = queue;
    return queue;
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
