import type { LockTimings } from './lock-timings';

/**
 * How long a wait rests before its next poll of a key folder: `LOCK_POLL_MS`, or as long as its last poll
 * took when that was longer, but never more than a quarter of `LOCK_STALE_MS`. A poll is two listings and
 * a stat; through a FUSE mount without client caches each is a round trip to the servers (10-40 ms on
 * GlusterFS), and every process waiting on many keys at once would otherwise keep one call per wait queued
 * there all the time. Resting as long as the poll took keeps a wait's share of the file system at half or
 * less, on any file system, and grows the rest only where polls are slow. The cap keeps a waiter looking
 * at least four times per stale time, so a takeover or a hand-off is seen within a quarter of it.
 */
export function pollIntervalMs(timings: Pick<LockTimings, 'pollMs' | 'staleMs'>, lastPollMs: number): number {
  const cap = Math.max(timings.pollMs, timings.staleMs / 4);
  return Math.min(cap, Math.max(timings.pollMs, lastPollMs));
}
