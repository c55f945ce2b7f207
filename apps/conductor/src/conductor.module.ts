import {
  type BeforeApplicationShutdown,
  type DynamicModule,
  Inject,
  Injectable,
  Module,
} from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import type { Logger as PinoLogger } from 'pino';
import { CacheCleaner } from '@app/cache-cleaner';
import { type CellTopology, cellTopology } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import { BrokerConnection, Publisher, RetryHeaderSigner } from '@app/messaging';
import type { ConductorConfig } from './config/conductor-config';
import { CleaningSchedule } from './cache/cleaning-schedule';
import { LeftoverSweep } from './cache/leftover-sweep';
import { CELL_TOPOLOGY, CONDUCTOR_CONFIG, ROOT_LOGGER, SHUTDOWN_CONTROLLER } from './conductor.tokens';
import { CopyCoordinator } from './copy/copy-coordinator';
import { type CopyLockPlan, CopyWorkflow } from './copy/copy-workflow';
import { DEFAULT_HOLDER_INDEX_OPTIONS, ImageHolderIndex } from './copy/holder-index';
import { SourceSelector } from './copy/source-selector';
import { RequestIntake } from './lifecycle/request-intake';
import { CopyRequestHandler } from './requests/copy-request.handler';
import { loadOrCreateHeaderKey } from './requests/header-key';
import { ProgressPublisher } from './requests/progress-publisher';
import { ConductorStats } from './status/conductor-stats';

/**
 * Passive checks of the cell's queues and exchange: a queue deleted under a running conductor is declared
 * again within this even when nothing publishes to it (e.g. the dead-letter target of the request queue).
 */
const TOPOLOGY_CHECK_MS = 5_000;

/** Runs the graceful stop when Nest closes (SIGTERM/SIGINT through enableShutdownHooks). */
@Injectable()
class GracefulShutdown implements BeforeApplicationShutdown {
  constructor(
    @Inject(RequestIntake) private readonly intake: RequestIntake,
    @Inject(ImageStore) private readonly store: ImageStore,
  ) {}

  async beforeApplicationShutdown(): Promise<void> {
    await this.intake.stop();
    // The copies have ended (finished or handed back): their worker threads may go.
    await this.store.close();
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
  static forRoot(config: ConductorConfig, rootLogger: PinoLogger, seams: ConductorSeams = {}): DynamicModule {
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
              logger: rootLogger.child({ part: 'broker' }),
            }),
        },
        {
          provide: Publisher,
          inject: [BrokerConnection],
          useFactory: (broker: BrokerConnection) => new Publisher(broker),
        },
        { provide: ConductorStats, useFactory: () => new ConductorStats() },
        {
          provide: NodeLockManager,
          inject: [ConductorStats],
          useFactory: (stats: ConductorStats) =>
            new NodeLockManager({
              root: config.CACHE_ROOT,
              conductorId: config.CONDUCTOR_ID,
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
          provide: CleaningSchedule,
          inject: [ImageStore, NodeLockManager, ImageHolderIndex],
          useFactory: (store: ImageStore, locks: NodeLockManager, index: ImageHolderIndex) => {
            const log = rootLogger.child({ part: 'cleaner' });
            const policy = {
              maxUnusedMs: config.CLEANER_MAX_UNUSED_MS,
              budgetBytes: config.CLEANER_NODE_BUDGET_BYTES,
              graceMs: config.CLEANER_GRACE_MS,
            };
            return new CleaningSchedule(new CacheCleaner(store, locks, policy, log), {
              enabled: config.CLEANER_ENABLED,
              intervalMs: config.CLEANER_INTERVAL_MS,
              listNodes: () => store.entries.listNodes(),
              onDeleted: (node, imageId) => index.forget(node, imageId),
              log,
            });
          },
        },
        {
          provide: LeftoverSweep,
          inject: [ImageStore, NodeLockManager],
          useFactory: (store: ImageStore, locks: NodeLockManager) =>
            new LeftoverSweep(store.entries, locks, {
              intervalMs: config.LEFTOVER_SWEEP_MS,
              root: config.CACHE_ROOT,
              listNodes: () => store.entries.listNodes(),
              log: rootLogger.child({ part: 'sweep' }),
            }),
        },
        {
          provide: CopyWorkflow,
          inject: [ImageStore, NodeLockManager, SourceSelector],
          useFactory: (store: ImageStore, locks: NodeLockManager, sources: SourceSelector) =>
            new CopyWorkflow(store, locks, sources, {
              lockWaitMs: config.LOCK_WAIT_MS,
              log: rootLogger.child({ part: 'copy' }),
              lockPlan: seams.lockPlan,
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
        {
          provide: RetryHeaderSigner,
          useFactory: async () =>
            new RetryHeaderSigner(await loadOrCreateHeaderKey(config.CACHE_ROOT), config.CELL_ID),
        },
        {
          provide: CopyRequestHandler,
          inject: [
            CopyCoordinator,
            Publisher,
            CELL_TOPOLOGY,
            ConductorStats,
            SHUTDOWN_CONTROLLER,
            RetryHeaderSigner,
          ],
          useFactory: (
            coordinator: CopyCoordinator,
            publisher: Publisher,
            topology: CellTopology,
            stats: ConductorStats,
            shutdown: AbortController,
            signer: RetryHeaderSigner,
          ) => {
            return new CopyRequestHandler({
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
          provide: RequestIntake,
          inject: [
            BrokerConnection,
            Publisher,
            CELL_TOPOLOGY,
            CopyRequestHandler,
            NodeLockManager,
            SHUTDOWN_CONTROLLER,
            ConductorStats,
            CopyCoordinator,
            CleaningSchedule,
            LeftoverSweep,
          ],
          useFactory: (
            broker: BrokerConnection,
            publisher: Publisher,
            topology: CellTopology,
            handler: CopyRequestHandler,
            locks: NodeLockManager,
            shutdown: AbortController,
            stats: ConductorStats,
            coordinator: CopyCoordinator,
            cleaning: CleaningSchedule,
            sweep: LeftoverSweep,
          ) => {
            stats.attachProbes({
              inFlight: () => coordinator.inFlight().length,
              brokerReconnects: () => broker.reconnects,
              brokerConnected: () => broker.state === 'connected',
              brokerBlocked: () => broker.blocked,
              topologyRedeclarations: () => broker.topologyHealth().redeclarations,
            });
            return new RequestIntake({
              broker,
              publisher,
              topology,
              handler,
              locks,
              background: [cleaning, sweep],
              concurrency: config.COPY_CONCURRENCY,
              graceMs: config.SHUTDOWN_GRACE_MS,
              shutdown,
              log: rootLogger.child({ part: 'intake' }),
            });
          },
        },
        GracefulShutdown,
      ],
      exports: [
        CONDUCTOR_CONFIG,
        ROOT_LOGGER,
        ConductorStats,
        CopyCoordinator,
        RequestIntake,
        BrokerConnection,
        NodeLockManager,
        ImageStore,
        CELL_TOPOLOGY,
        Publisher,
        SourceSelector,
        CleaningSchedule,
        LeftoverSweep,
      ],
    };
  }
}
