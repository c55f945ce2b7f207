import type { Logger } from '@app/contracts';
import type { Delivery } from './delivery';

export type ConsumerState = 'active' | 'paused' | 'closed';

/**
 * The handler owns the delivery until its promise settles and must settle it (ack, nackRequeue, or
 * publish elsewhere then ack) before that. A handler that throws or returns without settling is a bug:
 * the delivery then gets the `unsettled` policy.
 */
export type DeliveryHandler = (delivery: Delivery) => Promise<void> | void;

export interface ConsumeOptions {
  /** Unacked deliveries the broker may hand us at once: the copy concurrency. */
  prefetch: number;
  /**
   * What happens to a delivery whose handler threw or returned without settling it. 'reject' (default):
   * rejected without requeue, so the queue's dead-letter exchange moves it to the dead-letter queue
   * (visible, no hot loop). 'requeue': handed back; it comes straight back, and only RabbitMQ 3.x's
   * x-delivery-limit ends the loop (4.x does not count requeues), so use it with care.
   */
  unsettled?: 'reject' | 'requeue';
  /** First delay before re-subscribing after the broker closed our channel or cancelled us; doubles up to 10 s. */
  resubscribeDelayMs?: number;
  /** Defaults to the connection's logger. */
  logger?: Logger;
}

/** The cap of the resubscribe delay. */
const MAX_RESUBSCRIBE_DELAY_MS = 10_000;

/** Why a prefetch cannot be used, or undefined. */
export function prefetchProblem(prefetch: number): string | undefined {
  return Number.isInteger(prefetch) && prefetch >= 1
    ? undefined
    : `prefetch must be a positive integer (got ${prefetch})`;
}

/** The wait before the next subscribe after `failures` in a row: doubling from the first delay, capped. */
export function resubscribeDelayMs(
  options: Pick<ConsumeOptions, 'resubscribeDelayMs'>,
  failures: number,
): number {
  return Math.min((options.resubscribeDelayMs ?? 1000) * 2 ** failures, MAX_RESUBSCRIBE_DELAY_MS);
}

/** What the consumer does with a delivery once its handler has returned or thrown. */
export type AfterHandler =
  { settle: 'requeue' | 'reject'; message: string } | { settle?: undefined; message: string } | undefined;

/**
 * The handler's own settling stands; a delivery it left unsettled gets the `unsettled` policy; a throw is
 * logged either way (once settled, only logged: never settled twice).
 */
export function afterHandler(
  settled: boolean,
  threw: boolean,
  unsettled: ConsumeOptions['unsettled'] = 'reject',
): AfterHandler {
  if (!settled) {
    const message = threw
      ? 'handler threw without settling the delivery'
      : 'handler returned without settling the delivery';
    return { settle: unsettled, message };
  }
  return threw ? { message: 'handler threw after settling the delivery' } : undefined;
}
