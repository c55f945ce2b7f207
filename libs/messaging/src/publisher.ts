import type { ConfirmChannel, Options } from 'amqplib';
import type { BrokerConnection } from './broker-connection';
import { MessagingClosedError, PublishNotConfirmedError } from './errors';
import { errorFields, type MessagingLogger } from './logger';

/** AMQP basic properties we set; everything else keeps amqplib's defaults. */
export interface PublishProperties {
  messageId?: string;
  correlationId?: string;
  replyTo?: string;
  headers?: Record<string, unknown>;
  /** Defaults to application/json. */
  contentType?: string;
  contentEncoding?: string;
  type?: string;
  appId?: string;
  /** Milliseconds since the epoch; defaults to now. */
  timestamp?: number;
  /** delivery_mode 2. Default true: requests and results must survive a broker restart. */
  persistent?: boolean;
  /** Per-message TTL in ms. Never set it on requests: it would interfere with the retry queues' TTL. */
  expiration?: number;
}

export interface PublisherOptions {
  /** How long a publish waits for a (re)connection before it rejects. Default 10 s. */
  waitForConnectionMs?: number;
  /** How long a publish waits for the broker's confirm. Default 30 s. */
  confirmTimeoutMs?: number;
  /** Defaults to the connection's logger. */
  logger?: MessagingLogger;
}

interface ConfirmLease {
  readonly channel: ConfirmChannel;
  readonly generation: number;
  open: boolean;
  lastError?: Error;
}

/**
 * Publishes over one confirm channel, opened lazily on the current connection and re-opened after a
 * reconnect or after the broker closed it (e.g. a publish to a missing exchange closes the channel with
 * 404). A publish resolves only once the broker has confirmed it; a publish that was not confirmed is
 * rejected and NOT resent: the caller decides (the conductor leaves the request unacked, so it is
 * redelivered and the result published again - at-least-once, duplicates are allowed by the protocol).
 */
export class Publisher {
  private lease: ConfirmLease | undefined;
  private opening: Promise<ConfirmLease> | undefined;
  private closed = false;
  private readonly logger: MessagingLogger;
  private readonly waitForConnectionMs: number;
  private readonly confirmTimeoutMs: number;

  constructor(
    private readonly connection: BrokerConnection,
    options: PublisherOptions = {},
  ) {
    this.logger = options.logger ?? connection.logger;
    this.waitForConnectionMs = options.waitForConnectionMs ?? 10_000;
    this.confirmTimeoutMs = options.confirmTimeoutMs ?? 30_000;
  }

  /** `body`: a Buffer is sent as is (e.g. a message being retried), anything else as JSON. */
  async publish(
    exchange: string,
    routingKey: string,
    body: Buffer | object,
    properties: PublishProperties = {},
  ): Promise<void> {
    if (this.closed) throw new MessagingClosedError('Publisher');
    const content = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const lease = await this.channel();
    const options: Options.Publish = {
      contentType: properties.contentType ?? 'application/json',
      persistent: properties.persistent ?? true,
      timestamp: properties.timestamp ?? Math.floor(Date.now() / 1000),
      messageId: properties.messageId,
      correlationId: properties.correlationId,
      replyTo: properties.replyTo,
      headers: properties.headers,
      contentEncoding: properties.contentEncoding,
      type: properties.type,
      appId: properties.appId,
      expiration: properties.expiration,
    };
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new PublishNotConfirmedError(
            `RabbitMQ did not confirm a publish to '${exchange}' / '${routingKey}' within ${this.confirmTimeoutMs} ms`,
          ),
        );
      }, this.confirmTimeoutMs);
      try {
        // The return value is amqplib's write-buffer backpressure signal; the confirm callback still fires,
        // and our callers publish one result per copy, so we do not wait for 'drain'.
        lease.channel.publish(exchange, routingKey, content, options, (error: unknown) => {
          clearTimeout(timer);
          if (!error) return resolve();
          const why = lease.lastError ? `: ${lease.lastError.message}` : '';
          reject(
            new PublishNotConfirmedError(
              `RabbitMQ did not confirm a publish to '${exchange}' / '${routingKey}'${why}`,
              {
                cause: lease.lastError ?? error,
              },
            ),
          );
        });
      } catch (error) {
        // Channel closed between channel() and publish (amqplib throws IllegalOperationError).
        clearTimeout(timer);
        lease.open = false;
        reject(
          new PublishNotConfirmedError(
            `publish to '${exchange}' / '${routingKey}' failed: ${(error as Error).message}`,
            { cause: error },
          ),
        );
      }
    });
  }

  /** Publishes through the default exchange straight to `queue`. */
  sendToQueue(queue: string, body: Buffer | object, properties: PublishProperties = {}): Promise<void> {
    return this.publish('', queue, body, properties);
  }

  async close(): Promise<void> {
    this.closed = true;
    const lease = this.lease;
    this.lease = undefined;
    if (lease?.open) {
      lease.open = false;
      // amqplib's close() fails outstanding confirms, so let in-flight publishes settle first.
      // Bounded: a broker that never answers must not hang shutdown.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        lease.channel.waitForConfirms().catch(() => {}),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, this.confirmTimeoutMs))),
      ]);
      clearTimeout(timer);
      await lease.channel.close().catch((error: unknown) => {
        this.logger.debug({ ...errorFields(error) }, 'publisher channel close failed (already closed)');
      });
    }
  }

  private async channel(): Promise<ConfirmLease> {
    const current = this.lease;
    if (
      current?.open &&
      current.generation === this.connection.generation &&
      this.connection.state === 'connected'
    ) {
      return current;
    }
    // One opening at a time: concurrent publishes after a reconnect share the new channel.
    this.opening ??= this.open().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async open(): Promise<ConfirmLease> {
    const { channel, generation } = await this.connection.openConfirmChannel(this.waitForConnectionMs);
    const lease: ConfirmLease = { channel, generation, open: true };
    channel.on('error', (error: Error) => {
      lease.lastError = error;
      this.logger.warn({ ...errorFields(error) }, 'publisher channel error');
    });
    channel.on('close', () => {
      lease.open = false;
    });
    channel.on('handler-error', (error: Error, event: string) => {
      this.logger.error({ ...errorFields(error), event }, 'a publisher channel listener threw');
    });
    if (this.closed) {
      await channel.close().catch(() => {});
      throw new MessagingClosedError('Publisher');
    }
    this.lease = lease;
    return lease;
  }
}
