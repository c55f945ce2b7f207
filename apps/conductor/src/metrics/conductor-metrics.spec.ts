import { describe, expect, it } from 'vitest';
import { ConductorMetrics } from './conductor-metrics';

describe('ConductorMetrics', () => {
  it('shows the last background rounds’ durations, by round, and none before a round ran', async () => {
    const metrics = new ConductorMetrics();
    const rounds: Record<string, number | undefined> = { 'leftover-sweep': undefined };
    metrics.attachProbes({
      inFlight: () => 0,
      brokerReconnects: () => 0,
      brokerConnected: () => true,
      brokerBlocked: () => false,
      topologyRedeclarations: () => 0,
      backgroundRounds: () => rounds,
    });
    expect(await metrics.registry.metrics()).not.toContain('icc_background_round_seconds{');
    rounds['leftover-sweep'] = 1500;
    rounds['holder-index'] = 20;
    const text = await metrics.registry.metrics();
    expect(text).toContain('icc_background_round_seconds{round="leftover-sweep"} 1.5');
    expect(text).toContain('icc_background_round_seconds{round="holder-index"} 0.02');
  });

  it('shows the last background rounds’ file-system calls, by round, and none before a round ran', async () => {
    const metrics = new ConductorMetrics();
    const ops: Record<string, number | undefined> = { 'leftover-sweep': undefined };
    metrics.attachProbes({
      inFlight: () => 0,
      brokerReconnects: () => 0,
      brokerConnected: () => true,
      brokerBlocked: () => false,
      topologyRedeclarations: () => 0,
      backgroundRoundFsOps: () => ops,
    });
    expect(await metrics.registry.metrics()).not.toContain('icc_background_round_fs_ops{');
    ops['leftover-sweep'] = 10_001;
    ops['job-retention'] = 2;
    const text = await metrics.registry.metrics();
    expect(text).toContain('icc_background_round_fs_ops{round="leftover-sweep"} 10001');
    expect(text).toContain('icc_background_round_fs_ops{round="job-retention"} 2');
  });
});
