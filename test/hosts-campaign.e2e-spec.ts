import { describe, expect, it } from 'vitest';
import { Cleanups, campaignRun, runAndReport } from './campaigns/campaign-kit';
import { type HostsParams, hostsTestTimeoutMs, runHostsCampaign } from './campaigns/hosts';
import { conductorPool } from './support/conductor-harness';

/*
 * The across-hosts campaign (issue 13): conductors on three simulated hosts, each with its own sshfs
 * mount of one CACHE_ROOT, a 3-node RabbitMQ cluster of the bed's own, requests from a requester host;
 * broker node stops, link cuts past LOCK_STALE_MS, killed mounts, frozen mounts (the conductor leaves and
 * its host restarts it), SIGKILL and SIGSTOP at seeded moments.
 * Needs root (CI runs as root). CI size here; `npm run campaign -- --only hosts` runs it large.
 * Replay: CAMPAIGN_SEED=<seed> npx vitest run test/hosts-campaign
 */
const run = campaignRun('hosts');

describe('campaign: a cell across hosts (cluster node stops, partitions, dead and hung mounts, kills, pauses)', () => {
  const cleanups = new Cleanups();
  const pool = conductorPool(() => cleanups.run());

  it(
    'answers every request, verifies every destination, never two holders in the hold logs, nothing left once idle',
    async () => {
      const outcome = await runAndReport(run, () => runHostsCampaign(run, pool, cleanups));
      expect(outcome.violations).toEqual([]);
      const params = outcome.figures.params as HostsParams;
      const faults = outcome.figures.faults as Array<{ kind: string }>;
      expect(faults.length).toBe(Object.values(params.faults).reduce((a, b) => a + b, 0));
      expect(outcome.figures.lost).toBe(0);
      expect(outcome.figures.corrupt).toBe(0);
      // The hold logs judged something: every copy proves its locks at least once.
      expect((outcome.figures.holdLog as { spans: number }).spans).toBeGreaterThan(0);
    },
    hostsTestTimeoutMs(run),
  );
});
