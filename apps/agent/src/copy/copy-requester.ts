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
  /** The connection was lost while waiting (the reply queue died with it). */
  onConnectionLost?: (reason: Error) => void;
  /** Reconnected: new reply queue, and every request still waiting for its answer sent again. */
  onResent?: (requests: number) => void;
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
 *
 * Exclusive queues die with their connection, and answers published meanwhile are gone. So after a
 * connection loss it reconnects (BrokerConnection's recovery), declares new queues and publishes every
 * request still waiting for its final answer again, same requestId and correlation id: copies are
 * idempotent, so the conductor answers from the copy running (coalesced), or with already-present.
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
  private options?: PrepareOptions;
  /** Published requests without a final answer yet, by correlation id: what a reconnect sends again. */
  private readonly waiting = new Map<string, CopyRequest>();
  /** Set from a connection loss until the requests were sent again on the new connection. */
  private interrupted?: Error;
  private resending?: Promise<void>;
  private readonly lossListeners = new Set<(reason: Error) => void>();
  private readonly resendListeners = new Set<(requests: number) => void>();
  private readonly offConnection: (() => void)[];

  constructor(
    private readonly connection: BrokerConnection,
    private readonly topology: CellTopology,
  ) {
    this.offConnection = [
      connection.on('disconnected', ({ reason }) => {
        if (!this.options) return; // not prepared yet: prepare() itself fails
        this.interrupted ??= reason;
        for (const listener of this.lossListeners) listener(reason);
        this.wake();
      }),
      connection.on('connected', () => {
        if (this.interrupted && !this.resending)
          this.resending = this.resend().finally(() => {
            this.resending = undefined;
            this.wake();
          });
      }),
    ];
  }

  async prepare(options: PrepareOptions): Promise<void> {
    this.options = options;
    const { channel } = await this.connection.openChannel(CONNECT_TIMEOUT_MS);
    channel.on('error', (error: Error) => {
      // A lost connection also errors its channels: only a channel failing on a live connection is fatal.
      // The check waits a moment, so that the connection's own 'disconnected' has come first.
      setTimeout(() => {
        if (this.interrupted || this.connection.state !== 'connected') return;
        this.lost ??= error;
        this.wake();
      }, 200);
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
    await this.send(request, correlationId);
    if (this.options?.replies) this.waiting.set(correlationId, request);
  }

  private async send(request: CopyRequest, correlationId: string): Promise<void> {
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
   * the answer). A failed result with retryable: true goes to onAttemptFailed and is waited past. A lost
   * connection is waited through (see the class comment). Rejects with exit code 4 after `timeoutMs`, or
   * 5 when still disconnected by then, or when the requests could not be sent again.
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
    const { onConnectionLost, onResent } = callbacks;
    if (onConnectionLost) this.lossListeners.add(onConnectionLost);
    if (onResent) this.resendListeners.add(onResent);
    try {
      return await this.waitLoop(correlationId, timeoutMs, deadline, callbacks, () =>
        isCancelled ? { cancelled } : undefined,
      );
    } finally {
      if (onConnectionLost) this.lossListeners.delete(onConnectionLost);
      if (onResent) this.resendListeners.delete(onResent);
    }
  }

  private async waitLoop(
    correlationId: string,
    timeoutMs: number,
    deadline: number,
    callbacks: WaitCallbacks,
    cancellation: () => { cancelled: unknown } | undefined,
  ): Promise<CopyResult> {
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
        if (isFinalResult(result)) {
          this.waiting.delete(correlationId);
          return result;
        }
        callbacks.onAttemptFailed?.(result);
      }
      const cancel = cancellation();
      if (cancel) throw cancel.cancelled;
      if (this.lost)
        throw new CliError(
          ExitCode.UNREACHABLE,
          `lost the connection to RabbitMQ while waiting (${this.lost.message}); the request was published and its result will still be published on ${this.topology.eventsExchange.name}`,
        );
      const left = deadline - Date.now();
      if (left <= 0 && this.interrupted)
        throw new CliError(
          ExitCode.UNREACHABLE,
          `lost the connection to RabbitMQ while waiting (${this.interrupted.message}) and could not reconnect within ${Number((timeoutMs / 1000).toFixed(3))} s; the request was published and its result will still be published on ${this.topology.eventsExchange.name}`,
        );
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

  /** On the new connection: new channels and queues, then every request still waiting, sent again. */
  private async resend(): Promise<void> {
    try {
      await this.prepare(this.options!);
      for (const [correlationId, request] of this.waiting) await this.send(request, correlationId);
      this.interrupted = undefined;
      for (const listener of this.resendListeners) listener(this.waiting.size);
    } catch (error) {
      if (this.connection.state !== 'connected') return; // lost again: the next 'connected' tries again
      this.lost ??= error instanceof Error ? error : new Error(String(error));
    }
  }

  async close(): Promise<void> {
    for (const off of this.offConnection) off();
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
