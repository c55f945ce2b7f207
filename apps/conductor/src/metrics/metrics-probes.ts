import type { BrokerConnection } from '@app/messaging';
import type { CleanerRounds } from '../background/cleaner-rounds';
import type { JobRetention } from '../background/job-retention';
import type { LeftoverSweep } from '../background/leftover-sweep';
import type { CopyCoordinator } from '../copy/copy-coordinator';
import type { ImageHolderIndex } from '../copy/holder-index';
import type { StatsProbes } from './conductor-metrics';

/** The parts whose state the metrics' gauges read when scraped. */
export interface ProbedParts {
  coordinator: Pick<CopyCoordinator, 'inFlight'>;
  broker: Pick<BrokerConnection, 'reconnects' | 'state' | 'blocked' | 'topologyHealth'>;
  sweep: Pick<LeftoverSweep, 'view'>;
  cleaner: Pick<CleanerRounds, 'view'>;
  holders: Pick<ImageHolderIndex, 'view'>;
  retention: Pick<JobRetention, 'view'>;
}

/**
 * What the metrics' gauges read (ConductorMetrics.attachProbes): attached once every part exists, since the
 * metrics are made before the parts that report into them.
 */
export function metricsProbes({
  coordinator,
  broker,
  sweep,
  cleaner,
  holders,
  retention,
}: ProbedParts): StatsProbes {
  return {
    inFlight: () => coordinator.inFlight().length,
    brokerReconnects: () => broker.reconnects,
    brokerConnected: () => broker.state === 'connected',
    brokerBlocked: () => broker.blocked,
    topologyRedeclarations: () => broker.topologyHealth().redeclarations,
    backgroundRounds: () => ({
      'leftover-sweep': sweep.view().lastRound?.durationMs,
      'cache-cleaner': cleaner.view().lastRound?.durationMs,
      'holder-index': holders.view().lastScan?.durationMs,
      'job-retention': retention.view().lastRound?.durationMs,
    }),
    backgroundRoundFsOps: () => ({
      'leftover-sweep': sweep.view().lastRound?.fsOps,
      'cache-cleaner': cleaner.view().lastRound?.fsOps,
      'holder-index': holders.view().lastScan?.fsOps,
      'job-retention': retention.view().lastRound?.fsOps,
    }),
  };
}
