import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CopyPriority } from '@app/contracts';
import { ByteRateLimiter } from './byte-rate-limiter';

const MiB = 1024 * 1024;

describe('ByteRateLimiter', () => {
  // Virtual time: the assertions are on bytes granted per (virtual) second, never on how long a test runs.
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const clock = () => Date.now();

  /** A copy that takes 1 MiB after 1 MiB for as long as it runs; returns the bytes it was granted. */
  function greedy(limiter: ByteRateLimiter, priority: CopyPriority, log?: string[]) {
    const state = { bytes: 0, stopped: false };
    void (async () => {
      while (!state.stopped) {
        await limiter.take(MiB, priority);
        state.bytes += MiB;
        log?.push(priority);
      }
    })();
    return state;
  }

  it('grants the cap per second, not more, whatever the demand', async () => {
    const limiter = new ByteRateLimiter({ bytesPerSecond: 10 * MiB, backgroundBytesPerSecond: 0 }, clock);
    const copies = [greedy(limiter, 'interactive'), greedy(limiter, 'interactive')];
    await vi.advanceTimersByTimeAsync(10_000);
    const total = copies[0]!.bytes + copies[1]!.bytes;
    // 10 s at 10 MiB/s, plus the grant that starts the first second.
    expect(total).toBeGreaterThanOrEqual(100 * MiB);
    expect(total).toBeLessThanOrEqual(101 * MiB);
    // First come, first served within a class: the two share it evenly.
    expect(Math.abs(copies[0]!.bytes - copies[1]!.bytes)).toBeLessThanOrEqual(MiB);
    for (const c of copies) c.stopped = true;
  });

  it('gives background copies nothing while an interactive copy waits, and their own lower cap', async () => {
    const limiter = new ByteRateLimiter(
      { bytesPerSecond: 10 * MiB, backgroundBytesPerSecond: 2 * MiB },
      clock,
    );
    const log: string[] = [];
    const background = greedy(limiter, 'background', log);
    await vi.advanceTimersByTimeAsync(5_000);
    // Alone, background copies get their own cap: 2 MiB/s.
    expect(background.bytes).toBeGreaterThanOrEqual(10 * MiB);
    expect(background.bytes).toBeLessThanOrEqual(11 * MiB);

    const before = background.bytes;
    const interactive = greedy(limiter, 'interactive', log);
    await vi.advanceTimersByTimeAsync(5_000);
    // The interactive copy has the whole node cap; the background one at most the grant it was waiting for.
    expect(background.bytes - before).toBeLessThanOrEqual(MiB);
    expect(interactive.bytes).toBeGreaterThanOrEqual(49 * MiB);
    expect(interactive.bytes).toBeLessThanOrEqual(51 * MiB);
    const afterInteractiveStarted = log.slice(log.indexOf('interactive'));
    expect(afterInteractiveStarted.filter((p) => p === 'background').length).toBeLessThanOrEqual(1);

    interactive.stopped = true;
    await vi.advanceTimersByTimeAsync(5_000);
    expect(background.bytes - before).toBeGreaterThanOrEqual(9 * MiB);
    background.stopped = true;
  });

  it('counts background bytes against the node cap too', async () => {
    const limiter = new ByteRateLimiter(
      { bytesPerSecond: 4 * MiB, backgroundBytesPerSecond: 3 * MiB },
      clock,
    );
    const background = greedy(limiter, 'background');
    const interactive = greedy(limiter, 'interactive');
    await vi.advanceTimersByTimeAsync(10_000);
    expect(background.bytes + interactive.bytes).toBeLessThanOrEqual(41 * MiB);
    background.stopped = interactive.stopped = true;
  });

  it('does not wait without a cap, and stops a waiter whose copy is aborted', async () => {
    const uncapped = new ByteRateLimiter({ bytesPerSecond: 0, backgroundBytesPerSecond: 0 }, clock);
    await uncapped.take(1000 * MiB, 'interactive');
    expect(uncapped.granted).toBe(1000 * MiB);

    const limiter = new ByteRateLimiter({ bytesPerSecond: MiB, backgroundBytesPerSecond: 0 }, clock);
    await limiter.take(MiB, 'interactive');
    const controller = new AbortController();
    const waiting = limiter.take(MiB, 'interactive', controller.signal);
    controller.abort(new Error('copy aborted'));
    await expect(waiting).rejects.toThrow('copy aborted');
    expect(limiter.granted).toBe(MiB);
    expect(() => new ByteRateLimiter({ bytesPerSecond: -1, backgroundBytesPerSecond: 0 })).toThrow(
      /bytesPerSecond must be >= 0/,
    );
  });
});
