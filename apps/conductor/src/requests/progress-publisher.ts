import {
  type Logger,
  PROGRESS_EVENT_VERSION,
  type ProgressEvent,
  type CellTopology,
  progressRoutingKey,
} from '@app/contracts';
import { performance } from 'node:perf_hooks';
import type { Publisher } from '@app/messaging';
import type { InFlightCopy } from '../copy/copy-coordinator';

/**
 * Progress events are best effort: throttled per copy (phase changes always go out), published without
 * waiting, and a failed publish is only logged. They never slow a copy down.
 */
export class ProgressPublisher {
  /**
   * Throttle state per running copy. Keyed by the copy object, not its key: the entry goes away with
   * the copy (a Map by key grew by one entry per image and destination ever copied), and a later copy
   * of the same image to the same node starts with a fresh throttle.
   */
  private readonly last = new WeakMap<InFlightCopy, { at: number; phase: string }>();

  constructor(
    private readonly publisher: Publisher,
    private readonly topology: CellTopology,
    private readonly conductorId: string,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  onProgress(copy: InFlightCopy): void {
    const now = performance.now();
    const previous = this.last.get(copy);
    if (previous && previous.phase === copy.phase && now - previous.at < this.intervalMs) return;
    this.last.set(copy, { at: now, phase: copy.phase });
    if (!copy.source) return; // not chosen yet: nothing meaningful to say
    for (const requestId of copy.requestIds) {
      const event: ProgressEvent = {
        v: PROGRESS_EVENT_VERSION,
        type: 'progress',
        requestId,
        imageId: copy.imageId,
        source: copy.source,
        destination: copy.destination,
        phase: copy.phase,
        bytesDone: copy.bytesDone,
        bytesTotal: copy.bytesTotal,
        conductorId: this.conductorId,
        at: new Date().toISOString(),
      };
      this.publisher
        .publish(this.topology.eventsExchange.name, progressRoutingKey(copy.destination), event, {
          persistent: false,
          messageId: requestId,
        })
        .catch((error: Error) =>
          this.log.debug({ requestId, err: error.message }, 'progress event not published'),
        );
    }
  }
}
