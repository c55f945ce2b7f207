import { describe, expect, it } from 'vitest';
import { Cleanups, campaignRun, runAndReport } from './campaigns/campaign-kit';
import { runClockSkew } from './campaigns/clock-skew';
import { conductorPool } from './support/conductor-harness';

/*
 * Campaign 4 (issue 8), conductor level: conductors 3 h ahead and 3 h behind (libfaketime) copy beside a
 * true one and are paused past the stale time. The lock-level cases are in test/locking-clock-skew.
 * Replay: CAMPAIGN_SEED=<seed> npx vitest run test/campaign-clock-skew
 */
const run = campaignRun('clock-skew');

describe('campaign: conductors with wall clocks hours apart', () => {
  const cleanups = new Cleanups();
  const pool = conductorPool(() => cleanups.run());

  it('no two writers of one image, every request completes and verifies, nothing left', async () => {
    const outcome = await runAndReport(run, () => runClockSkew(run, pool, cleanups));
    expect(outcome.violations).toEqual([]);
    // Every conductor took part, the skewed ones included.
    expect(Object.keys(outcome.figures.answeredBy as object).sort()).toEqual([
      'clock-ahead',
      'clock-behind',
      'clock-true',
    ]);
  }, 300_000);
});
