import { describe, expect, it } from 'vitest';
import { runAdminFuzz, runCliFuzz, runMessageFuzz } from './campaigns/bad-input-campaign';
import { Cleanups, bySize, campaignRun, writeReport } from './campaigns/campaign-kit';
import { conductorPool } from './support/conductor-harness';

/*
 * Campaign 5 (issue 8): bad input at volume. Malformed and hostile AMQP messages mixed into valid traffic,
 * fuzzed requests against the admin HTTP routes, fuzzed command lines for `icc copy`. Everything is
 * generated from the seed: CAMPAIGN_SEED=<seed> npx vitest run test/campaign-bad-input replays it exactly.
 */
const run = campaignRun('bad-input');
const figures: Record<string, unknown> = {};
const timeout = bySize(run, { ci: 240_000, large: 3_600_000 });

describe('campaign: bad input at volume', () => {
  const cleanups = new Cleanups();
  const pool = conductorPool(() => cleanups.run());

  it(
    'AMQP: every bad message dead-lettered exactly once with its reason, valid traffic unaffected, no crash, nothing written outside CACHE_ROOT',
    async () => {
      const outcome = await runMessageFuzz(run, pool, cleanups);
      figures.messages = { violations: outcome.violations.length, ...outcome.figures };
      expect(outcome.violations.slice(0, 30)).toEqual([]);
      expect(outcome.figures.badMessages).toBeGreaterThanOrEqual(1_000);
    },
    timeout,
  );

  it(
    'admin HTTP: never a 5xx or a crash, protected routes 401 without the token, bad /locks parameters 400',
    async () => {
      const outcome = await runAdminFuzz(run, pool, cleanups);
      figures.http = { violations: outcome.violations.length, ...outcome.figures };
      expect(outcome.violations.slice(0, 30)).toEqual([]);
    },
    timeout,
  );

  it(
    'icc copy: fuzzed command lines always end with a documented exit code (0, 2, 3, 4, 5), never a stack trace',
    async () => {
      const outcome = await runCliFuzz(run, pool, cleanups);
      figures.cli = { violations: outcome.violations.length, ...outcome.figures };
      expect(outcome.violations.slice(0, 30)).toEqual([]);
    },
    timeout,
  );

  it('report', () => writeReport(run, figures));
});
