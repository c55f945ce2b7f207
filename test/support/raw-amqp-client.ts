import { randomUUID } from 'node:crypto';
import { type Channel, type ChannelModel, connect } from 'amqplib';
import { AMQP_URL } from './rabbitmq';

export interface RawReply {
  correlationId: string;
  /** performance.now() when it arrived. */
  receivedAt: number;
  body: Record<string, unknown>;
}

/**
 * A requester written against the protocol document only, with plain amqplib and none of our libs:
 * publishes raw JSON to the request queue and collects answers on its own exclusive reply queue.
 */
export class RawAmqpClient {
  readonly replies: RawReply[] = [];
  /** Final replies by correlation id (benchmarks wait on thousands). */
  readonly finals = new Map<string, Record<string, unknown>>();
  private replyQueue = '';

  private constructor(
    private readonly connection: ChannelModel,
    private readonly channel: Channel,
  ) {}

  static async open(url = AMQP_URL): Promise<RawAmqpClient> {
    const connection = await connect(url);
    const channel = await connection.createChannel();
    const client = new RawAmqpClient(connection, channel);
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    client.replyQueue = queue;
    await channel.consume(
      queue,
      (m) => {
        if (!m) return;
        const reply = {
          correlationId: String(m.properties.correlationId),
          receivedAt: performance.now(),
          body: JSON.parse(m.content.toString()) as Record<string, unknown>,
        };
        client.replies.push(reply);
        if (reply.body.retryable !== true && !client.finals.has(reply.correlationId))
          client.finals.set(reply.correlationId, reply.body);
      },
      { noAck: true },
    );
    return client;
  }

  /** Publishes `body` (an object is JSON-encoded, a string or Buffer goes as is); returns the correlation id. */
  /** replyTo: false sends none, a string names another queue; by default this client's reply queue. */
  /** headers: any AMQP headers, e.g. forged x-icc-* ones. */
  send(
    queue: string,
    body: unknown,
    properties: {
      contentType?: string | null;
      messageId?: string;
      replyTo?: boolean | string;
      headers?: Record<string, unknown>;
    } = {},
  ): string {
    const correlationId = randomUUID();
    const content = Buffer.isBuffer(body)
      ? body
      : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    this.channel.sendToQueue(queue, content, {
      contentType:
        properties.contentType === null ? undefined : (properties.contentType ?? 'application/json'),
      persistent: true,
      messageId: properties.messageId,
      correlationId,
      headers: properties.headers,
      replyTo:
        properties.replyTo === false
          ? undefined
          : typeof properties.replyTo === 'string'
            ? properties.replyTo
            : this.replyQueue,
    });
    return correlationId;
  }

  /** The exclusive queue this client's answers arrive on (for publishers of its own, e.g. with confirms). */
  get replyQueueName(): string {
    return this.replyQueue;
  }

  /** The final answer for a correlation id (failed with retryable: true is not final). */
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
