import { performance } from 'node:perf_hooks';
import type { BrokerConnection, BrokerEndpointView, ConnectionState, TopologyHealth } from '@app/messaging';
import type { CleanerRoundsView } from '../background/cleaner-rounds';
import type { HolderIndexView } from '../copy/holder-index';
import type { JobRetentionView } from '../background/job-retention';
import type { LeftoverSweepView } from '../background/leftover-sweep';
import type { BandwidthReport } from '../copy/node-bandwidth';
import type { CopyCoordinator } from '../copy/copy-coordinator';
import type { CopyPhase } from '../copy/copy-job';
import type { ReadSlotsView } from '../copy/read-slots';
import type { JobView } from '../jobs/recent-jobs';
import type { CellConductorsView } from '../lifecycle/conductor-heartbeat';
import type { CacheRootCheckView } from '../cache-root/cache-root-check';
import type { LifecycleState, ConductorLifecycle } from '../lifecycle/conductor-lifecycle';
import type { ConductorMetrics, ConductorTotals } from '../metrics/conductor-metrics';
import type { QueueDepthReport } from './queue-depths';

/** One copy running in this conductor, as GET /status shows it. */
export interface InFlightCopyView {
  key: string;
  imageId: string;
  /** Unknown until the source is chosen. */
  source: string | null;
  destination: string;
  /** Every request answered by this copy (duplicates are coalesced onto it). */
  requestIds: string[];
  phase: CopyPhase;
  bytesDone: number;
  bytesTotal: number;
  /** 0..100, null while the size is unknown. */
  percent: number | null;
  startedAt: string;
  elapsedMs: number;
  /** How long it has waited for its locks so far; null once it holds them. */
  lockWaitMs: number | null;
}

export interface ConductorStatus {
  conductorId: string;
  cellId: string;
  version: string;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  now: string;
  broker: {
    state: ConnectionState;
    connected: boolean;
    reconnects: number;
    lastError: string | null;
    connectionName: string;
    /** The broker stopped reading from this connection (memory or disk alarm): no answer can be sent. */
    blocked: boolean;
    blockedReason: string | null;
    blockedSince: string | null;
    /** Which broker of AMQP_URL it is on (or was on last), password masked; see BrokerEndpointView. */
    endpoint: BrokerEndpointView;
  };
  /** Queues or the exchange found missing (deleted under us) and declared again. */
  topology: TopologyHealth;
  consumer: { state: LifecycleState; subscribed: boolean; queue: string; deliveriesInFlight: number };
  concurrency: number;
  inFlight: InFlightCopyView[];
  totals: ConductorTotals;
  /** null while the broker is not connected (or the queues could not be read). */
  queues: QueueDepthReport | null;
  /** This conductor's reads per source node now, against NODE_READ_LIMIT. */
  sourceReads: ReadSlotsView;
  /** The cache cleaner's schedule in this conductor (enabled: false unless CLEANER_ENABLED). */
  cacheCleaner: CleanerRoundsView;
  /** Leftovers of dead attempts collected in this conductor (lock entries, partial files). */
  leftovers: LeftoverSweepView;
  /** This conductor's index of which node holds which image, and its last scan; null: not wired. */
  holderIndex: HolderIndexView | null;
  /** Removal of old job records, cancel markers and answers in this conductor; null: not wired. */
  jobRetention: JobRetentionView | null;
  /** The cell's newest pre-cache and purge jobs (from the shared folder), newest first. */
  jobs: JobView[];
  /** The cell's origin (ORIGIN_URL; the auth header by name only) and this conductor's downloads; null: none. */
  origin: OriginView | null;
  /** This conductor's byte-rate caps (NODE_*_BPS, BACKGROUND_*_BPS) and the bytes moved through each capped node. */
  bandwidth: BandwidthReport | null;
  /** The cell's conductors, versions and liveness, from their records as last listed (docs/upgrades.md). */
  conductors: CellConductorsView | null;
  /** What the start-up check of CACHE_ROOT measured (null when this process ran none). */
  cacheRootCheck: CacheRootCheckView | null;
}

export interface OriginView {
  urlTemplate: string;
  authHeader?: string;
  checksumHeader: string;
  downloads: number;
  bytes: number;
}

export interface StatusReportParts {
  identity: {
    conductorId: string;
    cellId: string;
    version: string;
    concurrency: number;
    requestQueue: string;
  };
  broker: Pick<
    BrokerConnection,
    | 'state'
    | 'reconnects'
    | 'lastError'
    | 'connectionName'
    | 'blockedView'
    | 'topologyHealth'
    | 'endpointView'
  >;
  intake: Pick<ConductorLifecycle, 'state' | 'consumerSubscribed' | 'inFlightDeliveries'>;
  copies: Pick<CopyCoordinator, 'inFlight'>;
  stats: Pick<ConductorMetrics, 'totals'>;
  queues: { depths(): Promise<QueueDepthReport | null> };
  reads: { readSlots(): ReadSlotsView };
  cleaner: { view(): CleanerRoundsView };
  sweep: { view(): LeftoverSweepView };
  holders?: { view(): HolderIndexView };
  retention?: { view(): JobRetentionView };
  origin?: { describe(): OriginView } | null;
  bandwidth?: { describe(): BandwidthReport };
  jobs?: { recent(): Promise<JobView[]> };
  cell?: { cell(): CellConductorsView };
  cacheRootCheck?: CacheRootCheckView;
  clock?: { now(): number; monotonic(): number };
}

const systemClock = { now: () => Date.now(), monotonic: () => performance.now() };

/**
 * Builds the GET /status document from the parts that own each piece; no state of its own. Everything
 * but the queue depths is read from memory, and those are bounded (QueueDepths), so it answers in every
 * broker state: down, blocked by an alarm, or not answering.
 */
export class StatusReport {
  private readonly clock: { now(): number; monotonic(): number };
  private readonly startedAtMs: number;

  constructor(private readonly parts: StatusReportParts) {
    this.clock = parts.clock ?? systemClock;
    this.startedAtMs = this.clock.now();
  }

  async build(): Promise<ConductorStatus> {
    const { identity, broker, intake, copies, stats } = this.parts;
    const queues = await this.parts.queues.depths();
    // A shared folder that cannot be read must not take /status down with it.
    const jobs = (await this.parts.jobs?.recent().catch(() => [])) ?? [];
    const blocked = broker.blockedView();
    const now = this.clock.now();
    const mono = this.clock.monotonic();
    return {
      conductorId: identity.conductorId,
      cellId: identity.cellId,
      version: identity.version,
      pid: process.pid,
      startedAt: new Date(this.startedAtMs).toISOString(),
      uptimeSeconds: Math.round((now - this.startedAtMs) / 1000),
      now: new Date(now).toISOString(),
      broker: {
        state: broker.state,
        connected: broker.state === 'connected',
        reconnects: broker.reconnects,
        lastError: broker.lastError?.message ?? null,
        connectionName: broker.connectionName,
        blocked: blocked.blocked,
        blockedReason: blocked.reason,
        blockedSince: blocked.since,
        endpoint: broker.endpointView(),
      },
      topology: broker.topologyHealth(),
      consumer: {
        state: intake.state,
        subscribed: intake.consumerSubscribed,
        queue: identity.requestQueue,
        deliveriesInFlight: intake.inFlightDeliveries,
      },
      concurrency: identity.concurrency,
      inFlight: copies
        .inFlight()
        .map((copy) => ({
          key: copy.key,
          imageId: copy.imageId,
          source: copy.source ?? null,
          destination: copy.destination,
          requestIds: [...copy.requestIds],
          phase: copy.phase,
          bytesDone: copy.bytesDone,
          bytesTotal: copy.bytesTotal,
          percent:
            copy.bytesTotal > 0
              ? Math.min(100, Math.round((copy.bytesDone / copy.bytesTotal) * 1000) / 10)
              : null,
          startedAt: copy.startedAt,
          elapsedMs: Math.round(mono - copy.startedMono),
          lockWaitMs:
            copy.phase === 'waiting-for-lock' && copy.lockWaitStartedMono !== undefined
              ? Math.round(mono - copy.lockWaitStartedMono)
              : null,
        }))
        .sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.key.localeCompare(b.key)),
      totals: structuredClone(stats.totals),
      queues,
      sourceReads: this.parts.reads.readSlots(),
      cacheCleaner: this.parts.cleaner.view(),
      leftovers: this.parts.sweep.view(),
      holderIndex: this.parts.holders?.view() ?? null,
      jobRetention: this.parts.retention?.view() ?? null,
      origin: this.parts.origin?.describe() ?? null,
      bandwidth: this.parts.bandwidth?.describe() ?? null,
      jobs,
      conductors: this.parts.cell?.cell() ?? null,
      cacheRootCheck: this.parts.cacheRootCheck ?? null,
    };
  }
}
