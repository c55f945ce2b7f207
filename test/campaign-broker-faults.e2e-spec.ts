import { describe, expect, it } from 'vitest';
import {
  type BrokerFaultParams,
  brokerFaultTestTimeoutMs,
  restoreBroker,
  runBrokerFaults,
} from './campaigns/broker-faults';
import { Cleanups, campaignRun, runAndReport } from './campaigns/campaign-kit';
import { conductorPool } from './support/conductor-harness';

/*
 * Campaign 2 (issue 8): RabbitMQ stopped and started, and the conductors' connections closed by the
 * broker, during a run. It stops the whole broker, so vitest.config.mts runs this file alone.
 * Replay: CAMPAIGN_SEED=<seed> npx vitest run test/campaign-broker-faults
 */
const run = campaignRun('broker-faults');

describe('campaign: broker faults (stop_app/start_app, close_connection)', () => {
  const cleanups = new Cleanups();
  const pool = conductorPool(async () => {
    await restoreBroker(); // whatever happened, the broker comes back first
    await cleanups.run();
  });

  it(
    'loses and corrupts nothing, shows the outage on GET /status, and recovers by itself',
    async () => {
      const outcome = await runAndReport(run, () => runBrokerFaults(run, pool, cleanups));
      expect(outcome.violations).toEqual([]);
      const params = outcome.figures.params as BrokerFaultParams;
      expect(outcome.figures.faults).toEqual({
        outage: params.outages,
        connectionClose: params.connectionCloses,
      });
      expect(outcome.figures.lost).toBe(0);
      expect(outcome.figures.corrupt).toBe(0);
    },
    brokerFaultTestTimeoutMs(run),
  );
});
