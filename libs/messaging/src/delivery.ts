import type { Logger } from '@app/contracts';
import type { Channel, ConsumeMessage, MessageProperties } from 'amqplib';
import { errorFields } from './logger';

export type DeliveryOutcome = 'acked' | 'requeued' | 'rejected' | 'lost';

/** A consumer's channel, and what deliveries need to know of it. */
export interface ChannelLease {
  readonly channel: Channel;
  /** Unique per channel in this process: which channel a delivery's tag belongs to. */
  readonly channelGeneration: number;
  readonly connectionGeneration: number;
  open: boolean;
  consumerTag?: string;
  closeReason?: Error;
}

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
    switch (settleStep(this.outcomeValue, this.lease.open)) {
      case 'already-lost':
        return false;
      case 'already-settled':
        this.logger.warn(
          { ...context, outcome, previous: this.outcomeValue },
          'delivery already settled; ignored',
        );
        return false;
      case 'channel-gone':
        this.outcomeValue = 'lost';
        this.logger.warn(
          { ...context, outcome },
          "the delivery's channel is gone; nothing sent, the broker redelivers the message",
        );
        return false;
      case 'send':
        break;
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
 * What settling a delivery does, from its outcome so far and whether its channel is open: a second
 * settle sends nothing (said, unless the delivery was lost: that is no caller's mistake), and a delivery
 * whose channel is gone is lost (its tag would be refused on any other channel).
 */
export function settleStep(
  previous: DeliveryOutcome | undefined,
  channelOpen: boolean,
): 'already-lost' | 'already-settled' | 'channel-gone' | 'send' {
  if (previous !== undefined) return previous === 'lost' ? 'already-lost' : 'already-settled';
  return channelOpen ? 'send' : 'channel-gone';
}
