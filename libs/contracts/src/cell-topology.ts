import { z } from 'zod';
import type { CopyResultStatus } from './copy-result';
import { cellIdSchema, parseField } from './ids';

/**
 * Every broker name and argument of a cell, in one place. The conductor, the CLI, the tests and
 * docs/protocol.md all derive from `cellTopology()`.
 *
 * Queue arguments must be byte-for-byte the same on every declaration (RabbitMQ refuses a re-declaration
 * with different arguments: PRECONDITION_FAILED, inequivalent arg). Changing the delivery limit or the
 * delay tiers of an existing cell therefore means deleting those queues, or using a policy instead.
 */

/** The attempt that the delivered message is (1-based). Absent means 1. */
export const HEADER_ATTEMPT = 'x-icc-attempt';
/** On dead-lettered messages (and retries): the reason code of the last failure. */
export const HEADER_REASON = 'x-icc-reason';
/** On dead-lettered messages (and retries): human-readable detail of the last failure. */
export const HEADER_DETAIL = 'x-icc-detail';
/** ISO timestamp when a conductor first received the request; kept across retries for totalMs. */
export const HEADER_FIRST_SEEN = 'x-icc-first-seen';

/**
 * On retry copies: an HMAC the conductors of a cell compute over the request and its x-icc-attempt and
 * x-icc-first-seen. Those two headers are trusted only with a valid signature: a requester cannot write
 * them (see docs/protocol.md).
 */
export const HEADER_SIGNATURE = 'x-icc-signature';

export const ICC_HEADERS = {
  attempt: HEADER_ATTEMPT,
  reason: HEADER_REASON,
  detail: HEADER_DETAIL,
  firstSeen: HEADER_FIRST_SEEN,
  signature: HEADER_SIGNATURE,
} as const;

export const DEFAULT_RETRY_DELAYS_MS: readonly number[] = [1000, 5000, 30000];
export const DEFAULT_MAX_ATTEMPTS = 5;
/**
 * Broker-side safety net only: a message whose consumer keeps crashing (so it is requeued without an
 * answer) is dead-lettered by the broker after this many deliveries. Normal failures are handled long
 * before this by the conductor (retry path, explicit dead-lettering with a reason).
 */
export const DEFAULT_DELIVERY_LIMIT = 20;

export const REQUEST_CONTENT_TYPE = 'application/json';

/** Every cell's queues and exchange are named `icc.<cell>.…`. */
export const BROKER_NAME_PREFIX = 'icc.';

/**
 * Why a request's reply_to cannot be answered to, or undefined when it can. A reply published into any
 * cell's own queues (requests, retry, dead letters) would be read there as a request or a dead letter:
 * such a reply_to is refused, whoever set it.
 */
export function replyToProblem(replyTo: string): string | undefined {
  if (replyTo.startsWith(BROKER_NAME_PREFIX))
    return `reply_to: names ${JSON.stringify(replyTo.slice(0, 120))}, in the "${BROKER_NAME_PREFIX}" namespace of the cells' own queues; use a queue of your own (e.g. an exclusive, server-named one)`;
  return undefined;
}

export type QueueArguments = Record<string, string | number>;

export interface QueueSpec {
  readonly name: string;
  readonly durable: true;
  readonly arguments: Readonly<QueueArguments>;
}

export interface RetryQueueSpec extends QueueSpec {
  readonly delayMs: number;
}

export interface ExchangeSpec {
  readonly name: string;
  readonly type: 'topic';
  readonly durable: true;
}

export interface CellTopology {
  readonly cellId: string;
  /** Requests are published here through the default exchange (routing key = queue name). */
  readonly requestQueue: QueueSpec;
  /** One queue per delay tier, ascending delay; messages expire back into the request queue. */
  readonly retryQueues: readonly RetryQueueSpec[];
  readonly deadLetterQueue: QueueSpec;
  /** Pre-cache and purge jobs, and cancels of copies and jobs (docs/protocol.md, "Jobs"). */
  readonly jobQueue: QueueSpec;
  readonly eventsExchange: ExchangeSpec;
  readonly maxAttempts: number;
  readonly deliveryLimit: number;
  readonly retryDelaysMs: readonly number[];
}

export interface CellTopologyOptions {
  retryDelaysMs?: readonly number[];
  maxAttempts?: number;
  deliveryLimit?: number;
}

const optionsSchema = z.object({
  retryDelaysMs: z
    .array(
      z
        .int()
        .min(1)
        .max(24 * 3600 * 1000),
    )
    .min(1, 'must list at least one delay')
    .refine(
      (d) => d.every((x, i) => i === 0 || x > d[i - 1]),
      'must be strictly ascending (one queue per delay)',
    ),
  maxAttempts: z.int().min(1).max(100),
  deliveryLimit: z.int().min(1).max(1000),
});

export function cellTopology(cellId: string, options: CellTopologyOptions = {}): CellTopology {
  const cell = parseField(cellIdSchema, cellId, 'cellId');
  const opts = parseField(
    optionsSchema,
    {
      retryDelaysMs: [...(options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS)],
      maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      deliveryLimit: options.deliveryLimit ?? DEFAULT_DELIVERY_LIMIT,
    },
    'topology options',
  );
  const prefix = `${BROKER_NAME_PREFIX}${cell}`;
  const requestQueueName = `${prefix}.requests`;
  const deadLetterQueueName = `${prefix}.dead`;
  // The request and jobs queues: quorum, the broker's delivery limit as a safety net, dead letters to .dead.
  const workQueueArguments = {
    'x-queue-type': 'quorum',
    'x-delivery-limit': opts.deliveryLimit,
    // The default exchange routes by queue name: no extra exchange to declare or to get wrong.
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': deadLetterQueueName,
  };

  return {
    cellId: cell,
    requestQueue: {
      name: requestQueueName,
      durable: true,
      arguments: workQueueArguments,
    },
    // One queue per fixed delay (a queue-wide TTL, not a per-message one), so every message of a tier
    // expires in arrival order. Quorum, so a retried request survives the loss of the node that held its
    // tier; a quorum queue dead-letters its expired messages at-most-once unless told `at-least-once`,
    // which RabbitMQ accepts only with `x-overflow: reject-publish`: the expired message then stays in
    // the tier until the request queue has confirmed its copy (RabbitMQ 3.10 or later).
    retryQueues: opts.retryDelaysMs.map((delayMs) => ({
      name: `${prefix}.retry.${delayMs}ms`,
      delayMs,
      durable: true,
      arguments: {
        'x-queue-type': 'quorum',
        'x-message-ttl': delayMs,
        'x-dead-letter-exchange': '',
        'x-dead-letter-routing-key': requestQueueName,
        'x-dead-letter-strategy': 'at-least-once',
        'x-overflow': 'reject-publish',
      },
    })),
    deadLetterQueue: {
      name: deadLetterQueueName,
      durable: true,
      arguments: { 'x-queue-type': 'quorum' },
    },
    jobQueue: { name: `${prefix}.jobs`, durable: true, arguments: workQueueArguments },
    eventsExchange: { name: `${prefix}.events`, type: 'topic', durable: true },
    maxAttempts: opts.maxAttempts,
    deliveryLimit: opts.deliveryLimit,
    retryDelaysMs: opts.retryDelaysMs,
  };
}

/** Every queue of a cell, dead-letter target first (the order they are declared in). */
export function cellQueues(topology: CellTopology): QueueSpec[] {
  return [topology.deadLetterQueue, topology.requestQueue, ...topology.retryQueues, topology.jobQueue];
}

/** Routing key of a job's events (accepted, progress, result): bind `job.<jobId>`, or `job.#` for all. */
export function jobRoutingKey(jobId: string): string {
  return `job.${jobId}`;
}

/** Routing key of a cancel answer on the events exchange. */
export function cancelRoutingKey(status: string): string {
  return `cancel.${status}`;
}

/** Routing key of a result on the events exchange. */
export function resultRoutingKey(status: CopyResultStatus): string {
  return `result.${status}`;
}

/**
 * Routing key of a progress event. Node ids may contain '.', which splits topic words: bind with
 * `progress.#` (all) or `progress.<destination>` (one node), not `progress.*`.
 */
export function progressRoutingKey(destination: string): string {
  return `progress.${destination}`;
}

export const ALL_RESULTS_BINDING = 'result.*';
export const ALL_PROGRESS_BINDING = 'progress.#';

/**
 * The delay tier for the retry after failed attempt `attempt` (1-based): the first failure waits the
 * shortest delay, later ones longer, the last tier repeats.
 */
export function retryQueueFor(topology: CellTopology, attempt: number): RetryQueueSpec {
  const tiers = topology.retryQueues;
  const index = Math.min(Math.max(Math.trunc(attempt), 1), tiers.length) - 1;
  return tiers[index];
}

/** Reads the 1-based attempt number from headers; anything missing or malformed counts as 1. */
export function attemptFromHeaders(headers: Record<string, unknown> | undefined): number {
  const raw = headers?.[HEADER_ATTEMPT];
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number(raw) : NaN;
  return Number.isSafeInteger(n) && n >= 1 ? n : 1;
}
