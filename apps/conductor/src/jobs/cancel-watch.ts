import { ReasonError } from '@app/contracts';
import type { JobRecords } from '@app/image-store';

/** How often the cancel markers of the copies running here are looked at. */
export const CANCEL_POLL_MS = 500;

interface Watched {
  requestId: string;
  jobId?: string;
  controller: AbortController;
}

/**
 * Cancels are marker files in the shared folder (JobRecords), written by whichever conductor took the
 * cancel message: durable, and seen by every conductor without a broadcast. A copy is registered here
 * before its markers are first checked, and the poll looks at every registered copy's markers, so a
 * cancel written at any moment reaches the copy: before the first check (that check sees it) or after
 * it (the poll does). `stop()` ends the poll.
 */
export class CancelWatch {
  private readonly watched = new Set<Watched>();
  private timer?: NodeJS.Timeout;
  private polling = false;

  constructor(
    private readonly jobs: JobRecords,
    private readonly pollMs = CANCEL_POLL_MS,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  /** True when the request, or its job, was cancelled. */
  async isCancelled(request: { requestId: string; jobId?: string }): Promise<boolean> {
    if (await this.jobs.isRequestCancelled(request.requestId)) return true;
    return request.jobId !== undefined && (await this.jobs.isCancelled(request.jobId));
  }

  /** Watches a copy until `done()`: its signal aborts with CANCELLED once a cancel marker appears. */
  watch(request: { requestId: string; jobId?: string }): { signal: AbortSignal; done: () => void } {
    const entry: Watched = { ...request, controller: new AbortController() };
    this.watched.add(entry);
    this.timer ??= setInterval(() => void this.poll(), this.pollMs);
    return {
      signal: entry.controller.signal,
      done: () => {
        this.watched.delete(entry);
        if (this.watched.size === 0) this.stop();
      },
    };
  }

  /** Aborts the copies of `requestId` (or of any request of `jobId`) running here; how many there were. */
  abortRunning(target: { requestId?: string; jobId?: string }): number {
    let n = 0;
    for (const entry of this.watched) {
      const hit =
        (target.requestId !== undefined && entry.requestId === target.requestId) ||
        (target.jobId !== undefined && entry.jobId === target.jobId);
      if (hit && !entry.controller.signal.aborted) {
        entry.controller.abort(cancelledError(entry.requestId));
        n += 1;
      }
    }
    return n;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      for (const entry of [...this.watched]) {
        if (entry.controller.signal.aborted) continue;
        if (await this.isCancelled(entry)) entry.controller.abort(cancelledError(entry.requestId));
      }
    } catch (error) {
      this.onError(error);
    } finally {
      this.polling = false;
    }
  }
}

export function cancelledError(requestId: string): ReasonError {
  return new ReasonError('CANCELLED', `request ${requestId} was cancelled`);
}
