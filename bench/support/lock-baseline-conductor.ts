/*
 * The conductor process with a benchmark's lock plan (BENCH_LOCK_BASELINE: none, global-lock or
 * exclusive-source); everything else is the real conductor. Started by bench/lock-scope.ts.
 */
import { main } from '../../apps/conductor/src';
import { BASELINE_ENV, LOCK_PLANS, parseBaseline } from './lock-baselines';

main({ lockPlan: LOCK_PLANS[parseBaseline(process.env[BASELINE_ENV])] });
