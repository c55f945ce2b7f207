import type { Logger } from '@app/contracts';
import type { ConfirmChannel, Options } from 'amqplib';
import type { BrokerConnection } from './broker-connection';
import {
  MessagingClosedError,
  PublishNotConfirmedError,
  PublishUnroutableError,
  isNotFound,
  notFoundName,
} from './errors';
import { errorFields } from './logger';

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
  /**
   * AMQP `mandatory`: a message no queue takes comes back (basic.return) and the publish rejects with
   * PublishUnroutableError instead of resolving. Use it wherever "confirmed" must also mean "in a queue".
   */
  mandatory?: boolean;
}

/**
 * Set on mandatory publishes so a basic.return can be matched to its publish (returns carry no delivery
 * tag). Internal bookkeeping: copies of a message (retry-path) drop it.
 */
export const HEADER_PUBLISH_ID = 'x-icc-publish-id';

export interface PublisherOptions {
  /** How long a publish waits for a (re)connection before it rejects. Default 10 s. */
  waitForConnectionMs?: number;
  /** How long a publish waits for the broker's confirm. Default 30 s. */
  confirmTimeoutMs?: number;
  /** Defaults to the connection's logger. */
  logger?: Logger;
}

interface ConfirmLease {
  readonly channel: ConfirmChannel;
  readonly generation: number;
  readonly id: number;
  open: boolean;
  lastError?: Error;
  /** Mandatory publishes awaiting their confirm, by publish id; set to true when returned. */
  readonly returned: Map<string, boolean>;
  nextPublishId: number;
}

let leaseIds = 0;

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
  private readonly logger: Logger;
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
    const publishId = properties.mandatory ? `${lease.id}.${lease.nextPublishId++}` : undefined;
    const headers = publishId
      ? { ...properties.headers, [HEADER_PUBLISH_ID]: publishId }
      : properties.headers;
    if (publishId) lease.returned.set(publishId, false);
    const options: Options.Publish = {
      contentType: properties.contentType ?? 'application/json',
      persistent: properties.persistent ?? true,
      timestamp: properties.timestamp ?? Math.floor(Date.now() / 1000),
      messageId: properties.messageId,
      correlationId: properties.correlationId,
      replyTo: properties.replyTo,
      headers,
      mandatory: properties.mandatory ?? false,
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
          // RabbitMQ sends basic.return before the confirm of the same message.
          const returned = publishId !== undefined && lease.returned.get(publishId) === true;
          if (publishId) lease.returned.delete(publishId);
          if (!error && !returned) return resolve();
          if (returned)
            return reject(
              new PublishUnroutableError(
                `RabbitMQ returned a publish to '${exchange}' / '${routingKey}': no queue took it (queue missing?)`,
                { returned: true },
              ),
            );
          const why = lease.lastError ? `: ${lease.lastError.message}` : '';
          const message = `RabbitMQ did not confirm a publish to '${exchange}' / '${routingKey}'${why}`;
          const cause = lease.lastError ?? error;
          reject(
            isNotFound(lease.lastError)
              ? new PublishUnroutableError(message, {
                  cause,
                  returned: false,
                  missing: notFoundName(lease.lastError),
                })
              : new PublishNotConfirmedError(message, { cause }),
          );
        });
      } catch (error) {
        // Channel closed between channel() and publish (amqplib throws IllegalOperationError).
        clearTimeout(timer);
        lease.open = false;
        if (publishId) lease.returned.delete(publishId);
        reject(
          new PublishNotConfirmedError(
            `publish to '${exchange}' / '${routingKey}' failed: ${(error as Error).message}`,
            { cause: error },
          ),
        );
      }
    });
  }

  /** Declares the connection's topology again (see BrokerConnection.repairTopology). */
  repairTopology(cause: string, missing?: string): Promise<void> {
    return this.connection.repairTopology(cause, this.waitForConnectionMs, missing);
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
    const lease: ConfirmLease = {
      channel,
      generation,
      id: ++leaseIds,
      open: true,
      returned: new Map(),
      nextPublishId: 0,
    };
    channel.on('return', (message: { properties: { headers?: Record<string, unknown> } }) => {
      const id = message.properties.headers?.[HEADER_PUBLISH_ID];
      if (typeof id === 'string' && lease.returned.has(id)) lease.returned.set(id, true);
    });
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
