import type { ConsumeMessage } from 'amqplib';
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
import { type BrokerConnection, Publisher, PublishUnroutableError, ReplyQueue } from '@app/messaging';
import { CONNECT_TIMEOUT_MS } from '../broker/agent-broker';
import { CliError, ExitCode } from '../cli/exit-codes';

const CONFIRM_TIMEOUT_MS = 15_000;
const RESEND_RETRY_FIRST_MS = 250;
const RESEND_RETRY_MAX_MS = 5_000;
const RESEND_DEFERRED = 'reconnected, but RabbitMQ has no queue';

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
  /** Reconnected, but the request queue is not on that broker yet: sending again with backoff. */
  onResendDeferred?: (problem: string) => void;
}

export interface PrepareOptions {
  /** Declare an exclusive reply queue and send requests with reply_to pointing at it. */
  replies: boolean;
  /** Bind an exclusive queue to the events exchange with this key (`progress.<node>` or `progress.#`). */
  progress?: { bindingKey: string; onProgress: (event: ProgressEvent) => void };
}

/**
 * Publishes copy requests the way docs/protocol.md describes them and collects their results, on
 * libs/messaging: a confirming Publisher (`mandatory`, persistent, content_type application/json,
 * message_id = requestId, reply_to and correlation_id) and a ReplyQueue (exclusive, server-named). Progress
 * events come from a second ReplyQueue bound to the cell's events exchange, bound before anything is
 * published so no early event is missed. Used by `icc copy` (one request) and `icc demo` (many).
 *
 * Exclusive queues die with their connection, and answers published meanwhile are gone. So when the reply
 * queue is renewed after a reconnect (to the same broker or the next of the list), every request still
 * waiting for its final answer is published again, same requestId and correlation id: copies are
 * idempotent, so the conductor answers from the copy running (coalesced), or with already-present.
 */
export class CopyRequester {
  private readonly publisher: Publisher;
  private replyQueue?: ReplyQueue;
  private progressQueue?: ReplyQueue;
  private prepared = false;
  private readonly replies = new Map<string, ConsumeMessage[]>();
  private readonly wakers = new Set<() => void>();
  private lost?: Error;
  /** Published requests without a final answer yet, by correlation id: what a reconnect sends again. */
  private readonly waiting = new Map<string, CopyRequest>();
  /** Set from a connection loss until the requests were sent again on the new connection. */
  private interrupted?: Error;
  private readonly lossListeners = new Set<(reason: Error) => void>();
  private readonly resendListeners = new Set<(requests: number) => void>();
  private readonly deferredListeners = new Set<(problem: string) => void>();
  private readonly offConnection: (() => void)[];
  /** Counts renewals, so that a resend loop of an older one stops. */
  private resendRound = 0;
  private closed = false;

  constructor(
    private readonly connection: BrokerConnection,
    private readonly topology: CellTopology,
  ) {
    this.publisher = new Publisher(connection, {
      waitForConnectionMs: CONNECT_TIMEOUT_MS,
      confirmTimeoutMs: CONFIRM_TIMEOUT_MS,
    });
    this.offConnection = [
      connection.on('disconnected', ({ reason }) => {
        if (!this.prepared) return; // not prepared yet: prepare() itself fails
        this.interrupted ??= reason;
        for (const listener of this.lossListeners) listener(reason);
        this.wake();
      }),
    ];
  }

  async prepare(options: PrepareOptions): Promise<void> {
    const fatal = ({ error }: { error: Error }) => {
      this.lost ??= error;
      this.wake();
    };
    const progress = options.progress;
    if (progress) {
      // Before the reply queue: a request is published only once both exist.
      this.progressQueue = new ReplyQueue(
        this.connection,
        (message) => {
          let event: ProgressEvent;
          try {
            event = parseProgressEvent(message.content);
          } catch {
            return; // best-effort events: an unreadable one is skipped
          }
          progress.onProgress(event);
        },
        {
          bindings: [{ exchange: this.topology.eventsExchange.name, routingKey: progress.bindingKey }],
          waitForConnectionMs: CONNECT_TIMEOUT_MS,
        },
      );
      this.progressQueue.on('failed', fatal);
      await this.progressQueue.open();
    }
    if (options.replies) {
      this.replyQueue = new ReplyQueue(this.connection, (message) => this.onReply(message), {
        waitForConnectionMs: CONNECT_TIMEOUT_MS,
      });
      this.replyQueue.on('failed', fatal);
      this.replyQueue.on('renewed', () => void this.resend());
      await this.replyQueue.open();
    }
    this.prepared = true;
  }

  /** Publishes and resolves once the broker confirmed it; fails if the request queue does not exist. */
  async publish(request: CopyRequest, correlationId: string): Promise<void> {
    if (!this.prepared) throw new Error('CopyRequester.prepare() first');
    await this.send(request, correlationId);
    if (this.replyQueue) this.waiting.set(correlationId, request);
  }

  private async send(request: CopyRequest, correlationId: string): Promise<void> {
    const queue = this.topology.requestQueue.name;
    try {
      await this.publisher.sendToQueue(queue, request, {
        contentType: REQUEST_CONTENT_TYPE,
        persistent: true,
        mandatory: true,
        messageId: request.requestId,
        correlationId,
        replyTo: this.replyQueue?.name,
      });
    } catch (error) {
      if (error instanceof PublishUnroutableError && error.returned)
        throw new CliError(
          ExitCode.UNREACHABLE,
          `RabbitMQ has no queue ${queue} (the request came back unroutable): no conductor has started for cell '${this.topology.cellId}' yet`,
          { cause: error },
        );
      throw new CliError(ExitCode.UNREACHABLE, `could not publish to ${queue}: ${(error as Error).message}`, {
        cause: error,
      });
    }
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
    const { onConnectionLost, onResent, onResendDeferred } = callbacks;
    if (onConnectionLost) this.lossListeners.add(onConnectionLost);
    if (onResent) this.resendListeners.add(onResent);
    if (onResendDeferred) this.deferredListeners.add(onResendDeferred);
    try {
      return await this.waitLoop(correlationId, timeoutMs, deadline, callbacks, () =>
        isCancelled ? { cancelled } : undefined,
      );
    } finally {
      if (onConnectionLost) this.lossListeners.delete(onConnectionLost);
      if (onResent) this.resendListeners.delete(onResent);
      if (onResendDeferred) this.deferredListeners.delete(onResendDeferred);
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
          `lost the connection to RabbitMQ while waiting (${this.interrupted.message}) and could not ${this.connection.state === 'connected' ? 'send the request again' : 'reconnect'} within ${Number((timeoutMs / 1000).toFixed(3))} s; the request was published and its result will still be published on ${this.topology.eventsExchange.name}`,
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

  /**
   * On the renewed reply queue: every request still waiting, sent again with the new reply_to. The
   * request queue may not be on this broker yet (a fail-over to a broker not clustered with the old one,
   * before a conductor has declared its topology there): the requests come back unroutable, and are sent
   * again with backoff rather than given up, until a later reconnect takes over or the wait times out.
   */
  private async resend(): Promise<void> {
    const round = ++this.resendRound;
    let delayMs = RESEND_RETRY_FIRST_MS;
    for (;;) {
      try {
        for (const [correlationId, request] of this.waiting) await this.send(request, correlationId);
        this.interrupted = undefined;
        for (const listener of this.resendListeners) listener(this.waiting.size);
        return;
      } catch (error) {
        if (this.connection.state !== 'connected' || this.closed) return; // lost again: the next renewal tries again
        if (!isReturned(error)) {
          this.lost ??= error instanceof Error ? error : new Error(String(error));
          return;
        }
        const deferred = !this.interrupted?.message.startsWith(RESEND_DEFERRED);
        this.interrupted = new Error(
          `${RESEND_DEFERRED} ${this.topology.requestQueue.name} there yet (no conductor of cell '${this.topology.cellId}' has declared it on that broker)`,
        );
        if (deferred) for (const listener of this.deferredListeners) listener(this.interrupted.message);
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, RESEND_RETRY_MAX_MS);
        if (round !== this.resendRound) return; // a newer renewal sends them itself
      } finally {
        this.wake();
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const off of this.offConnection) off();
    await this.publisher.close();
    await this.replyQueue?.close();
    await this.progressQueue?.close();
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

/** send()'s error for a request that came back unroutable: its queue is not on the broker. */
function isReturned(error: unknown): boolean {
  const cause = error instanceof Error ? error.cause : undefined;
  return cause instanceof PublishUnroutableError && cause.returned;
}
