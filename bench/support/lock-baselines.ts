/*
 * The baselines bench/lock-scope.ts measures the two node-local locks against (benchmarks only: the
 * conductor ships nodeLocalLocks alone and takes another plan only through its ConductorSeams).
 */
import { type CopyLockPlan, nodeLocalLocks } from '../../apps/conductor/src';

export type LockBaseline = 'none' | 'global-lock' | 'exclusive-source';

/** The folder the global-lock baseline locks in (it shows up as a node without images). */
export const GLOBAL_LOCK_NODE = 'global-lock-baseline';

export const LOCK_PLANS: Record<LockBaseline, CopyLockPlan> = {
  none: nodeLocalLocks,
  'global-lock': () => [{ node: GLOBAL_LOCK_NODE, imageId: 'all', mode: 'exclusive' }],
  'exclusive-source': (source, job) => [
    { node: source, imageId: job.imageId, mode: 'exclusive' },
    { node: job.destination, imageId: job.imageId, mode: 'exclusive' },
  ],
};

/** The environment variable that tells lock-baseline-conductor.ts which plan to run. */
export const BASELINE_ENV = 'BENCH_LOCK_BASELINE';

export function parseBaseline(value: string | undefined): LockBaseline {
  const baseline = value ?? 'none';
  if (!(baseline in LOCK_PLANS))
    throw new Error(
      `${BASELINE_ENV}: must be one of ${Object.keys(LOCK_PLANS).join(', ')}, got ${JSON.stringify(value)}`,
    );
  return baseline as LockBaseline;
}
