import { type DynamicModule, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import type { Logger as PinoLogger } from 'pino';
import { type CellTopology, readReleaseInfo } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { BrokerConnection } from '@app/messaging';
import type { ConductorConfig } from '../config/conductor-config';
import { CELL_TOPOLOGY, CONDUCTOR_CONFIG, ROOT_LOGGER } from '../conductor.tokens';
import { CleanerRounds } from '../background/cleaner-rounds';
import { LeftoverSweep } from '../background/leftover-sweep';
import { JobRetention } from '../background/job-retention';
import { NodeBandwidth } from '../copy/node-bandwidth';
import { CopyCoordinator } from '../copy/copy-coordinator';
import { SourceSelector } from '../copy/source-selector';
import { RecentJobs, recentJobs } from '../jobs/recent-jobs';
import { ConductorLifecycle } from '../lifecycle/conductor-lifecycle';
import { ConductorMetrics } from '../metrics/conductor-metrics';
import { AdminAuth } from './admin-auth';
import { AdminTokenGuard } from './admin-token.guard';
import { STATUS_PAGE } from './admin.tokens';
import { HealthController } from './health.controller';
import { LockTable } from './lock-table';
import { LocksController } from './locks.controller';
import { MetricsController } from './metrics.controller';
import { QueueDepths } from './queue-depths';
import { ReadinessProbe } from './readiness-probe';
import { ReadinessIndicator } from './readiness.indicator';
import { StatusPageController } from './status-page.controller';
import { StatusReport } from './status-report';
import { OriginDownload } from '../copy/origin-download';
import { ImageHolderIndex } from '../copy/holder-index';
import { CacheRootGuard } from '../lifecycle/cache-root-guard';
import { ConductorHeartbeat } from '../lifecycle/conductor-heartbeat';
import type { CacheRootCheckView } from '../lifecycle/cache-root-check';
import { StatusController } from './status.controller';
import { loadStatusPage } from './status-page/status-page';

/**
 * The admin HTTP endpoint: GET / (status page), /status, /locks, /metrics (bearer token) and
 * /health/live, /health/ready (open). It reads the conductor's parts and changes nothing; the plain
 * classes it wires (StatusReport, QueueDepths, LockTable, ReadinessProbe, AdminAuth) hold the logic.
 * `conductor` is the ConductorModule.forRoot() module whose exports it reads.
 */
@Module({})
export class AdminModule {
  /** `startCheck`: what the start-up check of CACHE_ROOT measured, shown on /status. */
  static forRoot(
    conductor: DynamicModule,
    startCheck: { cacheRootCheck?: CacheRootCheckView } = {},
  ): DynamicModule {
    return {
      module: AdminModule,
      imports: [conductor, TerminusModule.forRoot({ logger: false })],
      controllers: [
        StatusPageController,
        StatusController,
        LocksController,
        MetricsController,
        HealthController,
      ],
      providers: [
        {
          provide: AdminAuth,
          inject: [CONDUCTOR_CONFIG],
          useFactory: (config: ConductorConfig) => new AdminAuth(config.ADMIN_TOKEN),
        },
        AdminTokenGuard,
        { provide: STATUS_PAGE, useFactory: () => loadStatusPage() },
        {
          provide: QueueDepths,
          inject: [BrokerConnection, CELL_TOPOLOGY, ROOT_LOGGER],
          useFactory: (broker: BrokerConnection, topology: CellTopology, log: PinoLogger) =>
            new QueueDepths({ broker, topology, log: log.child({ part: 'admin' }) }),
        },
        {
          provide: StatusReport,
          inject: [
            CONDUCTOR_CONFIG,
            CELL_TOPOLOGY,
            BrokerConnection,
            ConductorLifecycle,
            CopyCoordinator,
            ConductorMetrics,
            QueueDepths,
            SourceSelector,
            CleanerRounds,
            LeftoverSweep,
            { token: OriginDownload, optional: true },
            ImageHolderIndex,
            ImageStore,
            NodeBandwidth,
            ConductorHeartbeat,
            JobRetention,
          ],
          useFactory: (
            config: ConductorConfig,
            topology: CellTopology,
            broker: BrokerConnection,
            intake: ConductorLifecycle,
            copies: CopyCoordinator,
            stats: ConductorMetrics,
            queues: QueueDepths,
            reads: SourceSelector,
            cleaner: CleanerRounds,
            sweep: LeftoverSweep,
            origin: OriginDownload | null,
            holders: ImageHolderIndex,
            store: ImageStore,
            bandwidth: NodeBandwidth,
            heartbeat: ConductorHeartbeat,
            retention: JobRetention,
          ) =>
            new StatusReport({
              identity: {
                conductorId: config.CONDUCTOR_ID,
                cellId: config.CELL_ID,
                version: readReleaseInfo().version,
                concurrency: config.COPY_CONCURRENCY,
                requestQueue: topology.requestQueue.name,
              },
              broker,
              intake,
              copies,
              stats,
              queues,
              reads,
              cleaner,
              sweep,
              holders,
              retention,
              origin,
              bandwidth,
              jobs: new RecentJobs(() => recentJobs(store.jobs)),
              cell: heartbeat,
              cacheRootCheck: startCheck.cacheRootCheck,
            }),
        },
        {
          provide: LockTable,
          inject: [CONDUCTOR_CONFIG],
          useFactory: (config: ConductorConfig) =>
            new LockTable({
              cacheRoot: config.CACHE_ROOT,
              staleMs: config.LOCK_STALE_MS,
              conductorId: config.CONDUCTOR_ID,
            }),
        },
        {
          provide: ReadinessProbe,
          inject: [CONDUCTOR_CONFIG, BrokerConnection, ConductorLifecycle, ROOT_LOGGER, CacheRootGuard],
          useFactory: (
            config: ConductorConfig,
            broker: BrokerConnection,
            intake: ConductorLifecycle,
            log: PinoLogger,
            guard: CacheRootGuard,
          ) =>
            new ReadinessProbe({
              broker,
              intake,
              cacheRoot: config.CACHE_ROOT,
              cacheRootGuard: guard,
              conductorId: config.CONDUCTOR_ID,
              log: log.child({ part: 'admin' }),
            }),
        },
        ReadinessIndicator,
      ],
    };
  }
}
