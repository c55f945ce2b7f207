import type { Message } from 'amqplib';
import {
  HEADER_ATTEMPT,
  HEADER_DETAIL,
  HEADER_FIRST_SEEN,
  HEADER_REASON,
  HEADER_SIGNATURE,
  attemptFromHeaders,
  retryQueueFor,
  type CellTopology,
  type ReasonCode,
  type RetryQueueSpec,
} from '@app/contracts';
import { PublishUnroutableError } from './errors';
import { HEADER_PUBLISH_ID, type Publisher, type PublishProperties } from './publisher';
import type { RetryHeaderSigner } from './retry-signature';

/** Header values are bounded: a whole stack trace in a header helps nobody and the table max is 64 KiB. */
export const MAX_DETAIL_HEADER_LENGTH = 1024;

/**
 * Headers not copied: those RabbitMQ maintains itself, and our per-publish bookkeeping. Broker headers: x-death grows with every retry
 * cycle, and a copied x-delivery-count could make a quorum queue count deliveries the copy never had.
 */
const NOT_COPIED_HEADERS = new Set([
  'x-death',
  'x-delivery-count',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
  HEADER_PUBLISH_ID,
  // A signature covers one attempt number: a copy gets a new one or none (dead letters are not signed,
  // so a dead letter put back into the request queue starts again at attempt 1).
  HEADER_SIGNATURE,
]);

export interface FailureInfo {
  reason: ReasonCode;
  detail: string;
}

export interface RetryOptions extends FailureInfo {
  /** The attempt that just failed (1-based). The copy carries failedAttempt + 1. */
  failedAttempt: number;
  /** Defaults to the tier for `failedAttempt` (retryQueueFor). */
  tier?: RetryQueueSpec;
  /** Defaults to the message's x-icc-first-seen header, else now. */
  firstSeen?: string;
  /** Signs the copy's attempt and first-seen (x-icc-signature) so the conductors can trust them. */
  signer?: RetryHeaderSigner;
}

export interface DeadLetterOptions extends FailureInfo {
  /** The attempt that failed; defaults to the message's x-icc-attempt header (absent = 1). */
  attempt?: number;
  firstSeen?: string;
}

/**
 * Copies an incoming message for republishing: same body and identifying properties, our headers set.
 * Not copied: expiration (a per-message TTL would fight the retry queue's TTL), priority, delivery tag.
 */
export function republishProperties(
  message: Message,
  iccHeaders: Record<string, unknown>,
): PublishProperties {
  const p = message.properties;
  const headers: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(p.headers ?? {}))
    if (!NOT_COPIED_HEADERS.has(key)) headers[key] = value;
  Object.assign(headers, iccHeaders);
  return {
    messageId: p.messageId as string | undefined,
    correlationId: p.correlationId as string | undefined,
    replyTo: p.replyTo as string | undefined,
    contentType: (p.contentType as string | undefined) ?? 'application/json',
    contentEncoding: p.contentEncoding as string | undefined,
    type: p.type as string | undefined,
    appId: p.appId as string | undefined,
    timestamp: p.timestamp as number | undefined,
    persistent: true,
    headers,
  };
}

function failureHeaders(options: FailureInfo, attempt: number, firstSeen: string): Record<string, unknown> {
  return {
    [HEADER_ATTEMPT]: attempt,
    [HEADER_REASON]: options.reason,
    [HEADER_DETAIL]: options.detail.slice(0, MAX_DETAIL_HEADER_LENGTH),
    [HEADER_FIRST_SEEN]: firstSeen,
  };
}

function firstSeenOf(message: Message, given: string | undefined): string {
  const header = message.properties.headers?.[HEADER_FIRST_SEEN] as unknown;
  return given ?? (typeof header === 'string' ? header : new Date().toISOString());
}

/**
 * Publishes so that "resolved" means routed AND confirmed. A message that no queue took (basic.return of
 * a `mandatory` publish) or that met a missing exchange (404) shows part of the topology is gone: the
 * topology is declared again and the message published once more; if that fails too, the error goes to
 * the caller, which must keep the original (unacked) and try later. `mandatory: false` for exchanges
 * where no binding is a normal state (the events exchange without listeners): only a missing exchange
 * counts there.
 */
export async function publishRouted(
  publisher: Publisher,
  exchange: string,
  routingKey: string,
  body: Buffer | object,
  properties: PublishProperties,
): Promise<void> {
  try {
    await publisher.publish(exchange, routingKey, body, properties);
  } catch (error) {
    if (!(error instanceof PublishUnroutableError)) throw error;
    // A 404 that closed the channel names what is missing: maybe another publish's exchange, not ours.
    await publisher.repairTopology(
      `publish to '${exchange || routingKey}' not routed: ${error.message}`,
      error.missing ?? (exchange || routingKey),
    );
    await publisher.publish(exchange, routingKey, body, properties);
  }
}

/**
 * Publishes a copy of `message` to the delay tier's retry queue, from which the broker moves it back to
 * the request queue when the TTL expires. Resolves once routed and confirmed (publishRouted); the caller then acks the
 * original (publish-then-ack: a crash in between duplicates the request, which the protocol allows, rather than
 * losing it). Returns the tier used.
 */
export async function publishToRetry(
  publisher: Publisher,
  topology: CellTopology,
  message: Message,
  options: RetryOptions,
): Promise<RetryQueueSpec> {
  const tier = options.tier ?? retryQueueFor(topology, options.failedAttempt);
  const attempt = options.failedAttempt + 1;
  const firstSeen = firstSeenOf(message, options.firstSeen);
  const headers = failureHeaders(options, attempt, firstSeen);
  if (options.signer) headers[HEADER_SIGNATURE] = options.signer.sign(message, attempt, firstSeen);
  await publishRouted(publisher, '', tier.name, message.content, {
    ...republishProperties(message, headers),
    mandatory: true,
  });
  return tier;
}

/**
 * Publishes a copy of `message` to the cell's dead-letter queue with the reason in x-icc-reason and
 * x-icc-detail. Resolves once routed and confirmed; the caller then acks the original.
 */
export async function publishToDeadLetter(
  publisher: Publisher,
  topology: CellTopology,
  message: Message,
  options: DeadLetterOptions,
): Promise<void> {
  const attempt = options.attempt ?? attemptFromHeaders(message.properties.headers);
  const headers = failureHeaders(options, attempt, firstSeenOf(message, options.firstSeen));
  await publishRouted(publisher, '', topology.deadLetterQueue.name, message.content, {
    ...republishProperties(message, headers),
    mandatory: true,
  });
}
