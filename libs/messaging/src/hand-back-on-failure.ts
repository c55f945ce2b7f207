import { type Logger, errorText } from '@app/contracts';
import type { Delivery } from './delivery';

/** How long a failed message waits before it goes back, so a broker that refuses publishes is no hot loop. */
export const REQUEUE_PAUSE_MS = 1_000;

export interface HandBackOptions {
  log: Logger;
  /** Aborted when the conductor stops: the message goes back at once, without the pause. */
  shutdown: AbortSignal;
  /** The warning logged before the message goes back. */
  warning: string;
  /** No warning at shutdown: the jobs queue hands its messages back silently then. */
  quietAtShutdown?: boolean;
  /**
   * True when the delivery went with its channel: nothing to hand back (the broker redelivers it). Asked
   * first, so the one who knows the delivery can mark it lost and say why.
   */
  droppedWithItsChannel?: (delivery: Delivery, error: unknown) => Promise<boolean>;
  /** Told when the broker took the message back (a nack on a dead channel is not). */
  onHandedBack?: () => void;
}

/**
 * Runs the work of one delivery; when it throws (a broker or folder failure while answering), the message
 * is handed back to the queue, which redelivers it: the work is idempotent. Never throws.
 */
export async function handBackOnFailure(
  delivery: Delivery,
  work: () => Promise<void>,
  options: HandBackOptions,
): Promise<void> {
  try {
    await work();
  } catch (error) {
    if (options.droppedWithItsChannel && (await options.droppedWithItsChannel(delivery, error))) return;
    const shuttingDown = options.shutdown.aborted;
    if (!(shuttingDown && options.quietAtShutdown))
      options.log.warn({ err: errorText(error), messageId: delivery.properties.messageId }, options.warning);
    if (!shuttingDown) await sleep(REQUEUE_PAUSE_MS);
    if (delivery.nackRequeue()) options.onHandedBack?.();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
