/**
 * How long a lock may go without a heartbeat before others may take it over, and how the holder keeps
 * itself safely inside that window. One place for the defaults; the conductor's config validates its
 * environment against the same bounds.
 */
export interface LockTimings {
  /** A holder whose heartbeat has not moved for this long (observer's own clock) may be taken over. */
  staleMs: number;
  /** How often a holder refreshes its heartbeat (proper-lockfile's `update`). */
  updateMs: number;
  /**
   * A holder only trusts its lock while its last heartbeat is younger than `staleMs - safetyMarginMs`,
   * and gives it up for good after any gap that long. The margin covers the step between the check and
   * the act that follows it (the rename that publishes an image).
   */
  safetyMarginMs: number;
  /** Re-check interval while waiting; file-system watches usually wake waiters much sooner. */
  pollMs: number;
}

export const DEFAULT_LOCK_TIMINGS: LockTimings = {
  staleMs: 20_000,
  updateMs: 4_000,
  safetyMarginMs: 5_000,
  pollMs: 100,
};

/** proper-lockfile refuses a stale time under 2 s and refreshes at most once a second. */
export const MIN_STALE_MS = 2_000;
export const MIN_UPDATE_MS = 1_000;

export function resolveLockTimings(overrides: Partial<LockTimings> = {}): LockTimings {
  const staleMs = overrides.staleMs ?? DEFAULT_LOCK_TIMINGS.staleMs;
  const updateMs = overrides.updateMs ?? Math.max(MIN_UPDATE_MS, Math.floor(staleMs / 5));
  const safetyMarginMs = overrides.safetyMarginMs ?? Math.floor(staleMs / 4);
  const pollMs = overrides.pollMs ?? DEFAULT_LOCK_TIMINGS.pollMs;
  const problems = lockTimingProblems({ staleMs, updateMs, safetyMarginMs, pollMs });
  if (problems.length > 0) throw new RangeError(`invalid lock timings: ${problems.join('; ')}`);
  return { staleMs, updateMs, safetyMarginMs, pollMs };
}

/** Problems with a set of timings; `names` lets a caller report them under its own names (env variables). */
export function lockTimingProblems(
  t: LockTimings,
  names: Record<keyof LockTimings, string> = {
    staleMs: 'staleMs',
    updateMs: 'updateMs',
    safetyMarginMs: 'safetyMarginMs',
    pollMs: 'pollMs',
  },
): string[] {
  const { staleMs, updateMs, safetyMarginMs, pollMs } = names;
  const problems: string[] = [];
  if (!(t.staleMs >= MIN_STALE_MS)) problems.push(`${staleMs}: must be at least ${MIN_STALE_MS}`);
  if (!(t.updateMs >= MIN_UPDATE_MS)) problems.push(`${updateMs}: must be at least ${MIN_UPDATE_MS}`);
  if (!(t.updateMs <= t.staleMs / 2)) problems.push(`${updateMs}: must be at most half of ${staleMs}`);
  if (!(t.safetyMarginMs > 0)) problems.push(`${safetyMarginMs}: must be positive`);
  // A holder beating every updateMs must stay trusted, with room for a slow file system.
  if (!(t.updateMs < t.staleMs - t.safetyMarginMs))
    problems.push(
      `${updateMs}: must be below ${staleMs} - ${safetyMarginMs}, or a healthy holder would distrust its own lock`,
    );
  if (!(t.pollMs >= 1 && t.pollMs <= t.staleMs)) problems.push(`${pollMs}: must be between 1 and ${staleMs}`);
  return problems;
}
