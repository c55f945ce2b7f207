import { describe, expect, it } from 'vitest';
import { pollIntervalMs } from './poll-pacing';

/** The test timings on a FUSE file system (campaign-fs.ts): 4 s stale, 20 ms poll. */
const ON_FUSE = { staleMs: 4_000, pollMs: 20 };

describe('the rest between two polls of one wait', () => {
  it('is LOCK_POLL_MS while polls are quicker than that (a local disk: hand-off unchanged)', () => {
    expect(pollIntervalMs(ON_FUSE, 0)).toBe(20);
    expect(pollIntervalMs(ON_FUSE, 3)).toBe(20);
    expect(pollIntervalMs({ staleMs: 20_000, pollMs: 100 }, 40)).toBe(100);
  });

  it('grows to as long as the last poll took when that was longer, so a wait polls at most half the time', () => {
    expect(pollIntervalMs(ON_FUSE, 90)).toBe(90);
    expect(pollIntervalMs(ON_FUSE, 640)).toBe(640);
  });

  it('is never longer than a quarter of LOCK_STALE_MS, so a waiter looks at least four times per stale time', () => {
    expect(pollIntervalMs(ON_FUSE, 1_500)).toBe(1_000);
    expect(pollIntervalMs(ON_FUSE, 60_000)).toBe(1_000);
    expect(pollIntervalMs({ staleMs: 20_000, pollMs: 100 }, 9_000)).toBe(5_000);
  });

  it('never goes below LOCK_POLL_MS, even when that is above the cap', () => {
    expect(pollIntervalMs({ staleMs: 4_000, pollMs: 3_000 }, 0)).toBe(3_000);
    expect(pollIntervalMs({ staleMs: 4_000, pollMs: 3_000 }, 10_000)).toBe(3_000);
  });
});
