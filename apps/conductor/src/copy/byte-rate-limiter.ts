import { performance } from 'node:perf_hooks';
import type { CopyPriority } from '@app/contracts';

export interface ByteRates {
  /** Cap of every copy through this limiter together; 0: none. */
  bytesPerSecond: number;
  /** Lower cap of the background copies together (they also count against bytesPerSecond); 0: none. */
  backgroundBytesPerSecond: number;
}

interface Waiter {
  bytes: number;
  resolve: () => void;
  reject: (error: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

/**
 * Late timers (a busy event loop) do not cost bandwidth up to this: a grant is booked from the previous
 * one's end rather than from now while it is at most this late.
 */
const CATCH_UP_MS = 250;

/**
 * One direction (reads or writes) of one node, for this conductor: grants byte counts so that the total
 * stays at the cap, and the background copies' total at their lower cap. Strict priority: while an
 * interactive copy waits, no background copy is granted anything. First come, first served within a class.
 * Time is booked ahead (a grant of n bytes moves the next grant n/rate later), so idle time is not saved
 * up into a burst.
 */
export class ByteRateLimiter {
  private nextFreeMs = -Infinity;
  private nextBackgroundFreeMs = -Infinity;
  private readonly waiting: Record<CopyPriority, Waiter[]> = { interactive: [], background: [] };
  private timer: NodeJS.Timeout | undefined;
  private grantedBytes = 0;

  constructor(
    readonly rates: ByteRates,
    private readonly now: () => number = () => performance.now(),
  ) {
    for (const [name, rate] of Object.entries(rates))
      if (!Number.isFinite(rate) || rate < 0) throw new RangeError(`${name} must be >= 0 (0: no cap)`);
  }

  /** Bytes granted since creation (for /status and tests). */
  get granted(): number {
    return this.grantedBytes;
  }

  /** Resolves when `bytes` may move; rejects with the signal's reason if it is aborted first. */
  take(bytes: number, priority: CopyPriority, signal?: AbortSignal): Promise<void> {
    if (!this.capped(priority)) {
      this.grantedBytes += bytes;
      return Promise.resolve();
    }
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { bytes, resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const queue = this.waiting[priority];
          const index = queue.indexOf(waiter);
          if (index >= 0) queue.splice(index, 1);
          reject(signal.reason);
          this.pump();
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.waiting[priority].push(waiter);
      this.pump();
    });
  }

  private capped(priority: CopyPriority): boolean {
    return (
      this.rates.bytesPerSecond > 0 || (priority === 'background' && this.rates.backgroundBytesPerSecond > 0)
    );
  }

  private pump(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    for (;;) {
      const now = this.now();
      const priority: CopyPriority | undefined =
        this.waiting.interactive.length > 0
          ? 'interactive'
          : this.waiting.background.length > 0
            ? 'background'
            : undefined;
      if (!priority) return;
      const { bytesPerSecond, backgroundBytesPerSecond } = this.rates;
      const background = priority === 'background' && backgroundBytesPerSecond > 0;
      const at = Math.max(
        bytesPerSecond > 0 ? this.nextFreeMs : -Infinity,
        background ? this.nextBackgroundFreeMs : -Infinity,
      );
      if (at > now) {
        this.timer = setTimeout(() => this.pump(), Math.max(1, Math.ceil(at - now)));
        return;
      }
      const waiter = this.waiting[priority].shift()!;
      if (bytesPerSecond > 0)
        this.nextFreeMs = book(this.nextFreeMs, now, (waiter.bytes / bytesPerSecond) * 1000);
      if (background)
        this.nextBackgroundFreeMs = book(
          this.nextBackgroundFreeMs,
          now,
          (waiter.bytes / backgroundBytesPerSecond) * 1000,
        );
      if (waiter.onAbort) waiter.signal!.removeEventListener('abort', waiter.onAbort);
      this.grantedBytes += waiter.bytes;
      waiter.resolve();
    }
  }
}

function book(nextFreeMs: number, now: number, costMs: number): number {
  return (nextFreeMs >= now - CATCH_UP_MS ? nextFreeMs : now) + costMs;
}
