import type { Channel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import {
  type CancelAnswer,
  type CellTopology,
  type JobEvent,
  type JobRefusal,
  type JobsQueueMessage,
  type ProgressEvent,
  ALL_PROGRESS_BINDING,
  REQUEST_CONTENT_TYPE,
  jobRoutingKey,
  parseJobsAnswer,
  parseProgressEvent,
} from '@app/contracts';
import type { BrokerConnection } from '@app/messaging';
import { CONNECT_TIMEOUT_MS } from '../broker/agent-broker';
import { CliError, ExitCode } from '../cli/exit-codes';

const CONFIRM_TIMEOUT_MS = 15_000;

export type JobsAnswer = JobEvent | CancelAnswer | JobRefusal;

export interface JobClientListeners {
  /** Answers on reply_to, and the job's events (job.<jobId>) when following a job. */
  onAnswer: (answer: JobsAnswer) => void;
  /** Progress events of the job's copies (requestId `<jobId>.<node>`). */
  onProgress?: (event: ProgressEvent) => void;
}

/**
 * Publishes one message to the cell's jobs queue the way docs/protocol.md describes it (confirm channel,
 * mandatory, persistent, reply_to an exclusive server-named queue) and hands every answer and, when
 * following a job, its events to the listeners. Queues are bound before the publish, so no early event
 * is missed.
 */
export class JobClient {
  private channel?: Channel;
  private confirm?: ConfirmChannel;
  private replyQueue?: string;

  constructor(
    private readonly connection: BrokerConnection,
    private readonly topology: CellTopology,
  ) {}

  async prepare(listeners: JobClientListeners, follow?: { jobId: string }): Promise<void> {
    const { channel } = await this.connection.openChannel(CONNECT_TIMEOUT_MS);
    channel.on('error', () => undefined); // a closed channel rejects the awaited calls
    this.channel = channel;
    const deliver = (message: ConsumeMessage | null) => {
      if (!message) return;
      try {
        listeners.onAnswer(parseJobsAnswer(message.content));
      } catch {
        // not an answer we know: readers ignore what they do not understand
      }
    };
    const reply = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    this.replyQueue = reply.queue;
    await channel.consume(reply.queue, deliver, { noAck: true });
    if (follow) {
      const events = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      await channel.bindQueue(events.queue, this.topology.eventsExchange.name, jobRoutingKey(follow.jobId));
      await channel.consume(events.queue, deliver, { noAck: true });
      const onProgress = listeners.onProgress;
      if (onProgress) {
        const progress = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
        await channel.bindQueue(progress.queue, this.topology.eventsExchange.name, ALL_PROGRESS_BINDING);
        const prefix = `${follow.jobId}.`;
        await channel.consume(
          progress.queue,
          (message) => {
            if (!message) return;
            try {
              const event = parseProgressEvent(message.content);
              if (event.requestId.startsWith(prefix)) onProgress(event);
            } catch {
              // best-effort events
            }
          },
          { noAck: true },
        );
      }
    }
    const { channel: confirm } = await this.connection.openConfirmChannel(CONNECT_TIMEOUT_MS);
    confirm.on('error', () => undefined);
    this.confirm = confirm;
  }

  /** Resolves once the broker confirmed the message into the jobs queue. */
  async publish(message: JobsQueueMessage, correlationId: string): Promise<void> {
    const confirm = this.confirm;
    if (!confirm || !this.replyQueue) throw new Error('JobClient.prepare() first');
    const queue = this.topology.jobQueue.name;
    let returned = false;
    const onReturn = () => (returned = true);
    confirm.on('return', onReturn);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`RabbitMQ did not confirm the message within ${CONFIRM_TIMEOUT_MS} ms`)),
          CONFIRM_TIMEOUT_MS,
        );
        confirm.sendToQueue(
          queue,
          Buffer.from(JSON.stringify(message)),
          {
            contentType: REQUEST_CONTENT_TYPE,
            persistent: true,
            mandatory: true,
            messageId: correlationId,
            correlationId,
            replyTo: this.replyQueue,
          },
          (error) => {
            clearTimeout(timer);
            if (error) reject(error instanceof Error ? error : new Error(String(error)));
            else resolve();
          },
        );
      });
    } catch (error) {
      throw new CliError(ExitCode.UNREACHABLE, `could not publish to ${queue}: ${(error as Error).message}`);
    } finally {
      confirm.removeListener('return', onReturn);
    }
    if (returned)
      throw new CliError(
        ExitCode.UNREACHABLE,
        `RabbitMQ has no queue ${queue}: no conductor of this version has started for cell '${this.topology.cellId}'`,
      );
  }

  async close(): Promise<void> {
    await this.confirm?.close().catch(() => undefined);
    await this.channel?.close().catch(() => undefined);
  }
}
