import type { Channel, ConfirmChannel, ConsumeMessage } from 'amqplib';
import {
  type CellTopology,
  type CopyRequest,
  type CopyResult,
  type ProgressEvent,
  REQUEST_CONTENT_TYPE,
  isFinalResult,
  parseCopyResult,
  parseProgressEvent,
} from '@app/contracts';
import type { BrokerConnection } from '@app/messaging';
import { CONNECT_TIMEOUT_MS } from '../broker/agent-broker';
import { CliError, ExitCode } from '../cli/exit-codes';

const CONFIRM_TIMEOUT_MS = 15_000;

export interface WaitCallbacks {
  /** A failed attempt that the conductor will retry (status failed, retryable: true): not final. */
  onAttemptFailed?: (result: CopyResult) => void;
  /** A reply that could not be read (ignored). */
  onUnreadable?: (problem: string) => void;
  /** Resolves (or rejects) to stop waiting early, e.g. on Ctrl-C. */
  cancel?: Promise<never>;
}

export interface PrepareOptions {
  /** Declare an exclusive reply queue and send requests with reply_to pointing at it. */
  replies: boolean;
  /** Bind an exclusive queue to the events exchange with this key (`progress.<node>` or `progress.#`). */
  progress?: { bindingKey: string; onProgress: (event: ProgressEvent) => void };
}

/**
 * Publishes copy requests the way docs/protocol.md describes them and collects their results on an
 * exclusive, server-named reply queue: confirm channel, `mandatory`, persistent, content_type
 * application/json, message_id = requestId, reply_to and correlation_id. Progress events come from a
 * second exclusive queue bound to the cell's events exchange, bound before anything is published so no
 * early event is missed. Used by `icc copy` (one request) and `icc demo` (many).
 */
export class CopyRequester {
  private channel?: Channel;
  private confirm?: ConfirmChannel;
  private confirmError?: Error;
  private replyQueue?: string;
  private readonly replies = new Map<string, ConsumeMessage[]>();
  private readonly returned = new Set<string>();
  private readonly wakers = new Set<() => void>();
  private lost?: Error;
  private readonly offDisconnected: () => void;

  constructor(
    private readonly connection: BrokerConnection,
    private readonly topology: CellTopology,
  ) {
    // Exclusive queues die with their connection: after a loss, answers can no longer reach us.
    this.offDisconnected = connection.on('disconnected', ({ reason }) => {
      this.lost = reason;
      this.wake();
    });
  }

  async prepare(options: PrepareOptions): Promise<void> {
    const { channel } = await this.connection.openChannel(CONNECT_TIMEOUT_MS);
    channel.on('error', (error: Error) => {
      this.lost ??= error;
      this.wake();
    });
    this.channel = channel;
    if (options.replies) {
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      this.replyQueue = queue;
      await channel.consume(queue, (message) => message && this.onReply(message), { noAck: true });
    }
    const progress = options.progress;
    if (progress) {
      const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
      await channel.bindQueue(queue, this.topology.eventsExchange.name, progress.bindingKey);
      await channel.consume(
        queue,
        (message) => {
          if (!message) return;
          let event: ProgressEvent;
          try {
            event = parseProgressEvent(message.content);
          } catch {
            return; // best-effort events: an unreadable one is skipped
          }
          progress.onProgress(event);
        },
        { noAck: true },
      );
    }
    const { channel: confirm } = await this.connection.openConfirmChannel(CONNECT_TIMEOUT_MS);
    confirm.on('error', (error: Error) => (this.confirmError = error));
    // basic.return arrives before the confirm when the default exchange has no queue of that name.
    confirm.on('return', (message: ConsumeMessage) =>
      this.returned.add(String(message.properties.messageId)),
    );
    this.confirm = confirm;
  }

  /** Publishes and resolves once the broker confirmed it; fails if the request queue does not exist. */
  async publish(request: CopyRequest, correlationId: string): Promise<void> {
    const confirm = this.confirm;
    if (!confirm) throw new Error('CopyRequester.prepare() first');
    const queue = this.topology.requestQueue.name;
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`RabbitMQ did not confirm the request within ${CONFIRM_TIMEOUT_MS} ms`)),
          CONFIRM_TIMEOUT_MS,
        );
        try {
          confirm.publish(
            '',
            queue,
            Buffer.from(JSON.stringify(request)),
            {
              contentType: REQUEST_CONTENT_TYPE,
              persistent: true,
              mandatory: true,
              messageId: request.requestId,
              correlationId,
              replyTo: this.replyQueue,
              timestamp: Math.floor(Date.now() / 1000),
            },
            (error: unknown) => {
              clearTimeout(timer);
              if (error)
                reject(
                  new Error(
                    `RabbitMQ refused the request${this.confirmError ? `: ${this.confirmError.message}` : ''}`,
                  ),
                );
              else resolve();
            },
          );
        } catch (error) {
          clearTimeout(timer);
          reject(error as Error);
        }
      });
    } catch (error) {
      throw new CliError(ExitCode.UNREACHABLE, `could not publish to ${queue}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (this.returned.has(request.requestId))
      throw new CliError(
        ExitCode.UNREACHABLE,
        `RabbitMQ has no queue ${queue} (the request came back unroutable): no conductor has started for cell '${this.topology.cellId}' yet`,
      );
  }

  /**
   * Resolves with the first final result carrying `correlationId` (results may be duplicated: the first is
   * the answer). A failed result with retryable: true goes to onAttemptFailed and is waited past. Rejects
   * with exit code 4 after `timeoutMs`, 5 when the connection is lost.
   */
  async waitForFinal(
    correlationId: string,
    timeoutMs: number,
    callbacks: WaitCallbacks = {},
  ): Promise<CopyResult> {
    const deadline = Date.now() + timeoutMs;
    let cancelled: unknown;
    let isCancelled = false;
    callbacks.cancel?.catch((reason: unknown) => {
      isCancelled = true;
      cancelled = reason;
      this.wake();
    });
    for (;;) {
      const queue = this.replies.get(correlationId) ?? [];
      while (queue.length > 0) {
        const message = queue.shift()!;
        let result: CopyResult;
        try {
          result = parseCopyResult(message.content);
        } catch (error) {
          callbacks.onUnreadable?.((error as Error).message);
          continue;
        }
        if (isFinalResult(result)) return result;
        callbacks.onAttemptFailed?.(result);
      }
      if (isCancelled) throw cancelled;
      if (this.lost)
        throw new CliError(
          ExitCode.UNREACHABLE,
          `lost the connection to RabbitMQ while waiting (${this.lost.message}); the request was published and its result will still be published on ${this.topology.eventsExchange.name}`,
        );
      const left = deadline - Date.now();
      if (left <= 0)
        throw new CliError(
          ExitCode.TIMED_OUT,
          `no final result within ${Number((timeoutMs / 1000).toFixed(3))} s`,
        );
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.wakers.delete(done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.wakers.add(done);
      });
    }
  }

  async close(): Promise<void> {
    this.offDisconnected();
    await this.confirm?.close().catch(() => {});
    await this.channel?.close().catch(() => {});
    this.confirm = undefined;
    this.channel = undefined;
  }

  private onReply(message: ConsumeMessage): void {
    const correlationId = String(message.properties.correlationId);
    let queue = this.replies.get(correlationId);
    if (!queue) this.replies.set(correlationId, (queue = []));
    queue.push(message);
    this.wake();
  }

  private wake(): void {
    for (const waker of [...this.wakers]) waker();
  }
}
