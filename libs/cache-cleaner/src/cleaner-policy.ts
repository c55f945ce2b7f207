import { InvalidFieldError } from '@app/contracts';

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

/** What the cache cleaner may evict. One policy per cleaner; `clean()` may override any field for one run. */
export interface CleanerPolicy {
  /** Images whose last use (meta `lastUsedAt`) is older than this are deleted. */
  maxUnusedMs: number;
  /**
   * Per-node budget in bytes: while a node's cache holds more, the least recently used images are deleted
   * first. 0 or undefined: no budget.
   */
  budgetBytes?: number;
  /**
   * Never evicted for the budget: images used within this long. Also the age an image file without valid
   * meta (an orphan) must reach before it is removed, since a publish writes the file a moment before its meta.
   */
  graceMs: number;
  /**
   * How long to wait for an image's exclusive lock before skipping it as busy for this run. Short: a waiting
   * writer holds the gate, so new readers of the image queue behind it meanwhile.
   */
  lockWaitMs: number;
}

/** Conservative defaults: nothing used within two weeks is evicted by age, and no budget. */
export const DEFAULT_CLEANER_POLICY: Readonly<CleanerPolicy> = Object.freeze({
  maxUnusedMs: 14 * DAY_MS,
  graceMs: HOUR_MS,
  lockWaitMs: 1_000,
});

/** Partial copies in tmp/ untouched for this long belong to dead attempts: removed without a lock. */
export const TMP_SWEEP_AGE_MS = DAY_MS;

/** Fills defaults and checks every field (a non-negative whole number); throws INVALID_REQUEST naming it. */
export function resolveCleanerPolicy(...layers: Array<Partial<CleanerPolicy> | undefined>): CleanerPolicy {
  const merged: Partial<CleanerPolicy> = { ...DEFAULT_CLEANER_POLICY };
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer ?? {})) {
      if (value !== undefined) (merged as Record<string, unknown>)[key] = value;
    }
  }
  for (const field of ['maxUnusedMs', 'budgetBytes', 'graceMs', 'lockWaitMs'] as const) {
    const value = merged[field];
    if (value === undefined && field === 'budgetBytes') continue;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0)
      throw new InvalidFieldError(field, 'must be a non-negative whole number');
  }
  if (merged.lockWaitMs === 0) throw new InvalidFieldError('lockWaitMs', 'must be at least 1');
  const policy = merged as CleanerPolicy;
  if (!policy.budgetBytes) delete policy.budgetBytes;
  return policy;
}
