import { Option } from 'commander';
import { DEFAULT_LOCK_TIMINGS } from '@app/locking';
import { UsageError } from './exit-codes';

/**
 * `--stale-ms`: the lock stale time. Commands that only read lock folders compare heartbeat ages with it
 * (any positive value); a command that takes locks passes the lock library's minimum.
 */
export function parseStaleMs(raw: string | undefined, minMs = 1): number {
  if (raw === undefined || raw === '') return DEFAULT_LOCK_TIMINGS.staleMs;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms < minMs) {
    const expected =
      minMs === 1
        ? 'a positive whole number of milliseconds'
        : `a whole number of milliseconds, at least ${minMs}`;
    throw new UsageError('--stale-ms', `must be ${expected} (got ${JSON.stringify(raw)})`);
  }
  return ms;
}

/**
 * The `--stale-ms` flag: `purpose` says what the command does with it; the default shown is the one
 * parseStaleMs falls back to.
 */
export const staleMsOption = (purpose: string) =>
  new Option('--stale-ms <ms>', `${purpose} (default ${DEFAULT_LOCK_TIMINGS.staleMs})`).env('LOCK_STALE_MS');

/** The purpose of `--stale-ms` for a command that takes the conductors' locks itself. */
export const CONDUCTORS_STALE_MS = "the conductors' LOCK_STALE_MS";
