import {
  type BeforeApplicationShutdown,
  type DynamicModule,
  Inject,
  Injectable,
  Module,
  type OnModuleInit,
} from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import type { Logger as PinoLogger } from 'pino';
import { CacheCleaner, ImagePurger } from '@app/cache-cleaner';
import { type CellTopology, cellTopology } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import {
  type BrokerAuth,
  BrokerConnection,
  type BrokerTls,
  Publisher,
  RetryHeaderSigner,
} from '@app/messaging';
import { type ConductorConfig, cacheRootHangExitMs } from './config/conductor-config';
import { CleanerRounds } from './background/cleaner-rounds';
import { JobRetention } from './background/job-retention';
import { LeftoverSweep } from './background/leftover-sweep';
import { roundLease } from './background/round-lease';
import { RoundFsOps } from './background/round-fs-ops';
import {
  CELL_TOPOLOGY,
  CONDUCTOR_CONFIG,
  HEADER_KEY,
  ROOT_LOGGER,
  SHUTDOWN_CONTROLLER,
} from './conductor.tokens';
import { CopyCoordinator } from './copy/copy-coordinator';
import { type CopyLockPlan, CopyWorkflow } from './copy/copy-workflow';
import { NodeBandwidth } from './copy/node-bandwidth';
import { DEFAULT_HOLDER_INDEX_OPTIONS, ImageHolderIndex } from './copy/holder-index';
import { OriginDownload, originLockManager } from './copy/origin-download';
import { SourceSelector } from './copy/source-selector';
import { OriginClient } from './origin/origin-client';
import { CancelWatch } from './jobs/cancel-watch';
import { JobMessageHandler } from './jobs/job-message-handler';
import { JobProgress } from './jobs/job-progress';
import { CacheRootGuard } from './lifecycle/cache-root-guard';
import { ConductorHeartbeat, conductorHeartbeat } from './lifecycle/conductor-heartbeat';
import { endHungProcess } from './lifecycle/end-hung-process';
import { ConductorLifecycle } from './lifecycle/conductor-lifecycle';
import { CopyRequestHandler } from './requests/copy-request-handler';
import { loadOrCreateHeaderKey } from './requests/header-key';
import { ProgressPublisher } from './requests/progress-publisher';
import { ConductorMetrics } from './metrics/conductor-metrics';

/**
 * Passive checks of the cell's queues and exchange: a queue deleted under a running conductor is declared
 * again within this even when nothing publishes to it (e.g. the dead-letter target of the request queue).
 */
const TOPOLOGY_CHECK_MS = 5_000;
/** Jobs-queue messages one conductor works on at once (a purge holds its message until it is done). */
const JOBS_PREFETCH = 4;

/** Runs the graceful stop when Nest closes (SIGTERM/SIGINT through enableShutdownHooks). */
@Injectable()
class GracefulShutdown implements BeforeApplicationShutdown {
  constructor(
    @Inject(ConductorLifecycle) private readonly lifecycle: ConductorLifecycle,
    @Inject(ImageStore) private readonly store: ImageStore,
    @Inject(CacheRootGuard) private readonly cacheRoot: CacheRootGuard,
  ) {}

  async beforeApplicationShutdown(): Promise<void> {
    await this.lifecycle.stop();
    // The copies have ended (finished or handed back): their worker threads may go.
    await this.store.close();
    this.cacheRoot.stop();
  }
}

/** Points the metrics' gauges at the parts they read, once every part exists (not inside a factory). */
@Injectable()
class MetricsProbes implements OnModuleInit {
  constructor(
    @Inject(ConductorMetrics) private readonly metrics: ConductorMetrics,
    @Inject(CopyCoordinator) private readonly coordinator: CopyCoordinator,
    @Inject(BrokerConnection) private readonly broker: BrokerConnection,
    @Inject(LeftoverSweep) private readonly sweep: LeftoverSweep,
    @Inject(CleanerRounds) private readonly cleaner: CleanerRounds,
    @Inject(ImageHolderIndex) private readonly holders: ImageHolderIndex,
    @Inject(JobRetention) private readonly retention: JobRetention,
  ) {}

  onModuleInit(): void {
    const { coordinator, broker, sweep, cleaner, holders, retention } = this;
    this.metrics.attachProbes({
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
    });
  }
}

/** What a caller other than main.ts may swap in: only bench/ does (its lock baselines). */
export interface ConductorSeams {
  lockPlan?: CopyLockPlan;
}

/**
 * Wires the conductor's plain classes; no business logic lives here. The config is loaded and validated
 * before Nest starts (main.ts), so a bad environment stops the process with a clear message.
 */
@Module({})
export class ConductorModule {
  static forRoot(
    config: ConductorConfig,
    rootLogger: PinoLogger,
    seams: ConductorSeams = {},
    /** The broker TLS material and login, read and checked by main.ts (config/tls-settings.ts). */
    brokerLogin: { tls: BrokerTls | undefined; auth: BrokerAuth } = { tls: undefined, auth: 'plain' },
  ): DynamicModule {
    return {
      module: ConductorModule,
      imports: [LoggerModule.forRoot({ pinoHttp: { logger: rootLogger, autoLogging: false } })],
      providers: [
        { provide: CONDUCTOR_CONFIG, useValue: config },
        { provide: ROOT_LOGGER, useValue: rootLogger },
        { provide: SHUTDOWN_CONTROLLER, useValue: new AbortController() },
        {
          provide: CELL_TOPOLOGY,
          useFactory: () =>
            cellTopology(config.CELL_ID, {
              retryDelaysMs: config.RETRY_DELAYS_MS,
              maxAttempts: config.MAX_ATTEMPTS,
            }),
        },
        {
          provide: ImageStore,
          useFactory: () =>
            new ImageStore({
              root: config.CACHE_ROOT,
              copyWorkers: config.HASH_WORKERS,
              onWarning: (message, error) =>
                rootLogger.warn(error === undefined ? {} : { err: String(error) }, message),
            }),
        },
        {
          provide: BrokerConnection,
          inject: [CELL_TOPOLOGY],
          useFactory: (topology: CellTopology) =>
            new BrokerConnection({
              url: config.AMQP_URL,
              connectionName: `conductor-${config.CONDUCTOR_ID}`,
              topologies: [topology],
              topologyCheckMs: TOPOLOGY_CHECK_MS,
              ...brokerLogin,
              logger: rootLogger.child({ part: 'broker' }),
            }),
        },
        {
          provide: Publisher,
          inject: [BrokerConnection],
          useFactory: (broker: BrokerConnection) => new Publisher(broker),
        },
        { provide: ConductorMetrics, useFactory: () => new ConductorMetrics() },
        {
          provide: NodeLockManager,
          inject: [ConductorMetrics],
          useFactory: (stats: ConductorMetrics) =>
            new NodeLockManager({
              root: config.CACHE_ROOT,
              conductorId: config.CONDUCTOR_ID,
              requireNodeFolder: true,
              timings: {
                staleMs: config.LOCK_STALE_MS,
                updateMs: config.LOCK_UPDATE_MS,
                safetyMarginMs: config.LOCK_SAFETY_MARGIN_MS,
                pollMs: config.LOCK_POLL_MS,
              },
              onEvent: (event) => stats.recordLockEvent(event),
            }),
        },
        {
          provide: ImageHolderIndex,
          inject: [ImageStore],
          useFactory: (store: ImageStore) =>
            new ImageHolderIndex(store.entries, {
              ...DEFAULT_HOLDER_INDEX_OPTIONS,
              onScanError: (error) => rootLogger.warn({ err: String(error) }, 'holder index: scan failed'),
            }),
        },
        {
          provide: SourceSelector,
          inject: [ImageStore, ImageHolderIndex],
          useFactory: (store: ImageStore, index: ImageHolderIndex) =>
            new SourceSelector(store, {
              index,
              readLimit: config.NODE_READ_LIMIT,
              conductorId: config.CONDUCTOR_ID,
            }),
        },
        {
          provide: CleanerRounds,
          inject: [ImageStore, NodeLockManager, ImageHolderIndex],
          useFactory: (store: ImageStore, locks: NodeLockManager, index: ImageHolderIndex) => {
            const log = rootLogger.child({ part: 'cleaner' });
            const policy = {
              maxUnusedMs: config.CLEANER_MAX_UNUSED_MS,
              budgetBytes: config.CLEANER_NODE_BUDGET_BYTES,
              graceMs: config.CLEANER_GRACE_MS,
            };
            const fsOps = new RoundFsOps();
            const counted = fsOps.parts(store, ['entries', 'markers']);
            return new CleanerRounds(new CacheCleaner(counted, locks, policy, log), {
              fsOps,
              enabled: config.CLEANER_ENABLED,
              intervalMs: config.CLEANER_INTERVAL_MS,
              lease: roundLease(locks, 'cache-cleaner', config.CLEANER_INTERVAL_MS),
              listNodes: () => store.entries.listNodes(),
              onDeleted: (node, imageId) => index.forget(node, imageId),
              log,
            });
          },
        },
        {
          provide: NodeBandwidth,
          useFactory: () =>
            new NodeBandwidth({
              read: config.NODE_READ_BPS,
              write: config.NODE_WRITE_BPS,
              backgroundRead: config.BACKGROUND_READ_BPS,
              backgroundWrite: config.BACKGROUND_WRITE_BPS,
            }),
        },
        {
          provide: JobRetention,
          inject: [ImageStore],
          useFactory: (store: ImageStore) =>
            new JobRetention(store.jobs, {
              answers: store.answers,
              keepMs: config.JOB_KEEP_MS,
              log: rootLogger.child({ part: 'job-retention' }),
            }),
        },
        {
          provide: LeftoverSweep,
          inject: [ImageStore, NodeLockManager],
          useFactory: (store: ImageStore, locks: NodeLockManager) =>
            new LeftoverSweep(store.entries, locks, {
              intervalMs: config.LEFTOVER_SWEEP_MS,
              lease: roundLease(locks, 'leftover-sweep', config.LEFTOVER_SWEEP_MS),
              resumableKeepMs: config.RESUMABLE_KEEP_MS,
              root: config.CACHE_ROOT,
              listNodes: () => store.entries.listNodes(),
              log: rootLogger.child({ part: 'sweep' }),
            }),
        },
        {
          provide: OriginDownload,
          inject: [ImageStore, NodeLockManager, ImageHolderIndex, ConductorMetrics],
          useFactory: (
            store: ImageStore,
            locks: NodeLockManager,
            index: ImageHolderIndex,
            stats: ConductorMetrics,
          ) =>
            config.ORIGIN_URL === undefined
              ? null
              : new OriginDownload(
                  store,
                  locks,
                  originLockManager({
                    root: config.CACHE_ROOT,
                    conductorId: config.CONDUCTOR_ID,
                    timings: locks.timings,
                    onEvent: (event) => stats.recordLockEvent(event),
                  }),
                  index,
                  new OriginClient({
                    urlTemplate: config.ORIGIN_URL,
                    authHeader: config.ORIGIN_AUTH_HEADER,
                    checksumHeader: config.ORIGIN_CHECKSUM_HEADER,
                    attempts: config.ORIGIN_ATTEMPTS,
                    idleTimeoutMs: config.ORIGIN_IDLE_TIMEOUT_MS,
                  }),
                  rootLogger.child({ part: 'origin' }),
                ),
        },
        {
          provide: CopyWorkflow,
          inject: [ImageStore, NodeLockManager, SourceSelector, OriginDownload, NodeBandwidth],
          useFactory: (
            store: ImageStore,
            locks: NodeLockManager,
            sources: SourceSelector,
            origin: OriginDownload | null,
            bandwidth: NodeBandwidth,
          ) =>
            new CopyWorkflow(store, locks, sources, {
              lockWaitMs: config.LOCK_WAIT_MS,
              log: rootLogger.child({ part: 'copy' }),
              lockPlan: seams.lockPlan,
              origin: origin ?? undefined,
              bandwidth,
            }),
        },
        {
          provide: ProgressPublisher,
          inject: [Publisher, CELL_TOPOLOGY],
          useFactory: (publisher: Publisher, topology: CellTopology) =>
            new ProgressPublisher(
              publisher,
              topology,
              config.CONDUCTOR_ID,
              config.PROGRESS_INTERVAL_MS,
              rootLogger,
            ),
        },
        {
          provide: CopyCoordinator,
          inject: [CopyWorkflow, ProgressPublisher],
          useFactory: (workflow: CopyWorkflow, progress: ProgressPublisher) =>
            new CopyCoordinator(workflow, (copy) => progress.onProgress(copy)),
        },
        { provide: HEADER_KEY, useFactory: () => loadOrCreateHeaderKey(config.CACHE_ROOT) },
        {
          provide: RetryHeaderSigner,
          inject: [HEADER_KEY],
          useFactory: (key: Buffer) => new RetryHeaderSigner(key, config.CELL_ID),
        },
        {
          provide: CacheRootGuard,
          inject: [HEADER_KEY],
          useFactory: (key: Buffer) => {
            const guard = new CacheRootGuard({
              cacheRoot: config.CACHE_ROOT,
              expectedKey: key,
              log: rootLogger.child({ part: 'cache-root' }),
              probeMs: config.CACHE_ROOT_PROBE_MS,
              hangExit: { afterMs: cacheRootHangExitMs(config), exit: endHungProcess },
            });
            guard.start();
            return guard;
          },
        },
        { provide: ConductorHeartbeat, useFactory: () => conductorHeartbeat(config, rootLogger) },
        {
          provide: CancelWatch,
          inject: [ImageStore],
          useFactory: (store: ImageStore) =>
            new CancelWatch(store.jobs, undefined, (error) =>
              rootLogger.warn({ err: String(error) }, 'cancel watch: reading the cancel markers failed'),
            ),
        },
        {
          provide: JobProgress,
          inject: [ImageStore, Publisher, CELL_TOPOLOGY],
          useFactory: (store: ImageStore, publisher: Publisher, topology: CellTopology) =>
            new JobProgress({
              jobs: store.jobs,
              publisher,
              topology,
              log: rootLogger.child({ part: 'jobs' }),
            }),
        },
        {
          provide: JobMessageHandler,
          inject: [
            ImageStore,
            NodeLockManager,
            JobProgress,
            CancelWatch,
            Publisher,
            CELL_TOPOLOGY,
            SHUTDOWN_CONTROLLER,
            CacheRootGuard,
          ],
          useFactory: (
            store: ImageStore,
            locks: NodeLockManager,
            progress: JobProgress,
            cancels: CancelWatch,
            publisher: Publisher,
            topology: CellTopology,
            shutdown: AbortController,
            cacheRoot: CacheRootGuard,
          ) => {
            const log = rootLogger.child({ part: 'jobs' });
            return new JobMessageHandler({
              store,
              purger: new ImagePurger(store, locks, log),
              progress,
              cancels,
              publisher,
              topology,
              conductorId: config.CONDUCTOR_ID,
              purgeWaitMs: config.LOCK_WAIT_MS,
              log,
              shutdown: shutdown.signal,
              cacheRoot,
            });
          },
        },
        {
          provide: CopyRequestHandler,
          inject: [
            CopyCoordinator,
            Publisher,
            CELL_TOPOLOGY,
            ConductorMetrics,
            SHUTDOWN_CONTROLLER,
            RetryHeaderSigner,
            CancelWatch,
            ImageStore,
            JobProgress,
            CacheRootGuard,
          ],
          useFactory: (
            coordinator: CopyCoordinator,
            publisher: Publisher,
            topology: CellTopology,
            stats: ConductorMetrics,
            shutdown: AbortController,
            signer: RetryHeaderSigner,
            cancels: CancelWatch,
            store: ImageStore,
            progress: JobProgress,
            cacheRoot: CacheRootGuard,
          ) => {
            return new CopyRequestHandler({
              cacheRoot,
              cancels,
              jobs: { records: store.jobs, progress },
              answers: store.answers,
              coordinator,
              publisher,
              topology,
              stats,
              conductorId: config.CONDUCTOR_ID,
              log: rootLogger.child({ part: 'requests' }),
              shutdown: shutdown.signal,
              signer,
            });
          },
        },
        {
          provide: ConductorLifecycle,
          inject: [
            BrokerConnection,
            Publisher,
            CELL_TOPOLOGY,
            CopyRequestHandler,
            NodeLockManager,
            SHUTDOWN_CONTROLLER,
            CleanerRounds,
            LeftoverSweep,
            JobRetention,
            JobMessageHandler,
            CancelWatch,
            ConductorHeartbeat,
            ImageHolderIndex,
          ],
          useFactory: (
            broker: BrokerConnection,
            publisher: Publisher,
            topology: CellTopology,
            handler: CopyRequestHandler,
            locks: NodeLockManager,
            shutdown: AbortController,
            cleaning: CleanerRounds,
            sweep: LeftoverSweep,
            retention: JobRetention,
            jobHandler: JobMessageHandler,
            cancels: CancelWatch,
            heartbeat: ConductorHeartbeat,
            holders: ImageHolderIndex,
          ) => {
            return new ConductorLifecycle({
              broker,
              publisher,
              topology,
              handler,
              jobs: { handler: jobHandler, prefetch: JOBS_PREFETCH, cancels },
              locks,
              background: [cleaning, sweep, retention, heartbeat, holders],
              concurrency: config.COPY_CONCURRENCY,
              graceMs: config.SHUTDOWN_GRACE_MS,
              shutdown,
              log: rootLogger.child({ part: 'lifecycle' }),
            });
          },
        },
        GracefulShutdown,
        MetricsProbes,
      ],
      exports: [
        CONDUCTOR_CONFIG,
        ROOT_LOGGER,
        ConductorMetrics,
        CopyCoordinator,
        ConductorLifecycle,
        BrokerConnection,
        NodeLockManager,
        ImageStore,
        CELL_TOPOLOGY,
        Publisher,
        SourceSelector,
        CleanerRounds,
        LeftoverSweep,
        JobRetention,
        ImageHolderIndex,
        OriginDownload,
        CacheRootGuard,
        NodeBandwidth,
        ConductorHeartbeat,
      ],
    };
  }
}
