import type { Logger as PinoLogger } from 'pino';
import { CacheCleaner, ImagePurger } from '@app/cache-cleaner';
import { type CellTopology, cellTopology } from '@app/contracts';
import { ImageStore, partialReadsBypassCache } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import {
  type BrokerAuth,
  BrokerConnection,
  type BrokerTls,
  Publisher,
  RetryHeaderSigner,
} from '@app/messaging';
import { CleanerRounds } from './background/cleaner-rounds';
import { JOB_RETENTION_ROUND_MS, JobRetention } from './background/job-retention';
import { LeftoverSweep } from './background/leftover-sweep';
import { RoundFsOps } from './background/round-fs-ops';
import { roundLease } from './background/round-lease';
import type { ConductorConfig } from './config/conductor-config';
import { type ConductorOptions, conductorOptions } from './conductor-options';
import { CopyCoordinator } from './copy/copy-coordinator';
import { type CopyLockPlan, CopyWorkflow } from './copy/copy-workflow';
import { DEFAULT_HOLDER_INDEX_OPTIONS, ImageHolderIndex } from './copy/holder-index';
import { NodeBandwidth } from './copy/node-bandwidth';
import { OriginDownload, originLockManager } from './copy/origin-download';
import { SourceSelector } from './copy/source-selector';
import { CancelWatch } from './jobs/cancel-watch';
import { JobMessageHandler } from './jobs/job-message-handler';
import { JobProgress } from './jobs/job-progress';
import { CacheRootGuard } from './cache-root/cache-root-guard';
import { ConductorHeartbeat, conductorHeartbeat } from './lifecycle/conductor-heartbeat';
import { ConductorLifecycle } from './lifecycle/conductor-lifecycle';
import { endHungProcess } from './lifecycle/end-hung-process';
import { ConductorMetrics } from './metrics/conductor-metrics';
import { metricsProbes } from './metrics/metrics-probes';
import { OriginClient } from './origin/origin-client';
import { CopyRequestHandler } from './requests/copy-request-handler';
import { loadOrCreateHeaderKey } from './cache-root/header-key';
import { ProgressPublisher } from './requests/progress-publisher';

/** What a caller other than main.ts may swap in: only bench/ does (its lock baselines). */
export interface ConductorSeams {
  lockPlan?: CopyLockPlan;
}

/** What the composition takes besides the configuration; all made by main.ts before it. */
export interface ConductorDeps {
  /** The process's root logger (main.ts makes it first: the start checks log with it). */
  rootLogger: PinoLogger;
  /** The broker TLS material and login, read and checked by main.ts (config/tls-settings.ts). */
  brokerLogin?: { tls: BrokerTls | undefined; auth: BrokerAuth };
  seams?: ConductorSeams;
  /** CACHE_ROOT's file-system type, as /proc/self/mountinfo names it (main.ts): how partials are read. */
  cacheRootFsType?: string;
}

/** Every part of one conductor, made once; Nest only hands them to the admin endpoint and the shutdown hook. */
export interface Conductor {
  config: ConductorConfig;
  options: ConductorOptions;
  rootLogger: PinoLogger;
  topology: CellTopology;
  /** Aborted when the stop gives up waiting: copies and purges still running hand their messages back. */
  shutdown: AbortController;
  store: ImageStore;
  broker: BrokerConnection;
  publisher: Publisher;
  metrics: ConductorMetrics;
  locks: NodeLockManager;
  holders: ImageHolderIndex;
  sources: SourceSelector;
  bandwidth: NodeBandwidth;
  /** Absent when the cell has no origin (ORIGIN_URL unset). */
  origin: OriginDownload | undefined;
  coordinator: CopyCoordinator;
  cleaner: CleanerRounds;
  sweep: LeftoverSweep;
  retention: JobRetention;
  heartbeat: ConductorHeartbeat;
  /** Watching CACHE_ROOT from the moment the conductor is composed (started here, stopped at shutdown). */
  cacheRoot: CacheRootGuard;
  cancels: CancelWatch;
  requests: CopyRequestHandler;
  jobs: JobMessageHandler;
  lifecycle: ConductorLifecycle;
}

/**
 * Composes the conductor's plain classes from its configuration: no business logic, and every dependency
 * passed by name, so the compiler checks the wiring. Nothing is connected or consumed yet (the lifecycle's
 * start() does that); only the cell's header key is read (or made) and the CACHE_ROOT guard started.
 */
export async function composeConductor(config: ConductorConfig, deps: ConductorDeps): Promise<Conductor> {
  const { rootLogger, seams = {} } = deps;
  const brokerLogin = deps.brokerLogin ?? { tls: undefined, auth: 'plain' };
  const log = (part: string) => rootLogger.child({ part });
  const options = conductorOptions(config);
  const shutdown = new AbortController();
  const { cellId, ...cellOptions } = options.cell;
  const topology = cellTopology(cellId, cellOptions);
  const uncachedPartialReads = partialReadsBypassCache(deps.cacheRootFsType);
  if (uncachedPartialReads)
    rootLogger.info(
      { fsType: deps.cacheRootFsType },
      "other copies' partial files are read with O_DIRECT, past this client's page cache",
    );
  const store = new ImageStore({
    ...options.store,
    uncachedPartialReads,
    onWarning: (message, error) =>
      rootLogger.warn(error === undefined ? {} : { err: String(error) }, message),
  });
  const broker = new BrokerConnection({
    ...options.broker,
    topologies: [topology],
    ...brokerLogin,
    logger: log('broker'),
  });
  const publisher = new Publisher(broker);
  const metrics = new ConductorMetrics();
  const locks = new NodeLockManager({
    ...options.locks,
    onEvent: (event) => metrics.recordLockEvent(event),
  });
  const headerKey = await loadOrCreateHeaderKey(options.store.root);
  const { hangExitAfterMs, ...guardOptions } = options.cacheRootGuard;
  const cacheRoot = new CacheRootGuard({
    ...guardOptions,
    expectedKey: headerKey,
    log: log('cache-root'),
    hangExit: { afterMs: hangExitAfterMs, exit: endHungProcess },
  });
  cacheRoot.start();
  const holders = new ImageHolderIndex(store.entries, {
    ...DEFAULT_HOLDER_INDEX_OPTIONS,
    // A miss is final only on the cell's folder (a dead mount lists as empty): see holder-index.ts.
    rootCheck: async () => {
      const state = await cacheRoot.checkAfterNow();
      return state.available ? undefined : state.problem;
    },
    onScanError: (error) => rootLogger.warn({ err: String(error) }, 'holder index: scan failed'),
  });
  const sources = new SourceSelector(store, { index: holders, ...options.sources });
  const bandwidth = new NodeBandwidth(options.bandwidth);
  const origin = composeOrigin(options, { store, locks, holders, metrics, log: log('origin') });
  const workflow = new CopyWorkflow(store, locks, sources, {
    ...options.copy,
    log: log('copy'),
    lockPlan: seams.lockPlan,
    origin,
    bandwidth,
  });
  const progress = new ProgressPublisher(
    publisher,
    topology,
    options.conductorId,
    options.progressIntervalMs,
    rootLogger,
  );
  const coordinator = new CopyCoordinator(workflow, (copy) => progress.onProgress(copy));
  const background = composeBackground(options, { store, locks, holders, log });

  const heartbeat = conductorHeartbeat(options.heartbeat, rootLogger);
  const cancels = new CancelWatch(store.jobs, undefined, (error) =>
    rootLogger.warn({ err: String(error) }, 'cancel watch: reading the cancel markers failed'),
  );
  const jobProgress = new JobProgress({ jobs: store.jobs, publisher, topology, log: log('jobs') });
  const jobsLog = log('jobs');
  const jobs = new JobMessageHandler({
    store,
    purger: new ImagePurger(store, locks, jobsLog),
    progress: jobProgress,
    cancels,
    publisher,
    topology,
    conductorId: options.conductorId,
    purgeWaitMs: options.jobs.purgeWaitMs,
    log: jobsLog,
    shutdown: shutdown.signal,
    cacheRoot,
  });
  const requests = new CopyRequestHandler({
    cacheRoot,
    cancels,
    jobs: { records: store.jobs, progress: jobProgress },
    answers: store.answers,
    coordinator,
    publisher,
    topology,
    stats: metrics,
    conductorId: options.conductorId,
    log: log('requests'),
    shutdown: shutdown.signal,
    signer: new RetryHeaderSigner(headerKey, cellId),
  });
  const lifecycle = new ConductorLifecycle({
    broker,
    publisher,
    topology,
    handler: requests,
    jobs: { handler: jobs, prefetch: options.jobs.prefetch, cancels },
    locks,
    background: [background.cleaner, background.sweep, background.retention, heartbeat, holders],
    ...options.lifecycle,
    shutdown,
    log: log('lifecycle'),
  });
  metrics.attachProbes(metricsProbes({ coordinator, broker, holders, ...background }));
  return {
    config,
    options,
    rootLogger,
    topology,
    shutdown,
    store,
    broker,
    publisher,
    metrics,
    locks,
    holders,
    sources,
    bandwidth,
    origin,
    coordinator,
    ...background,
    heartbeat,
    cacheRoot,
    cancels,
    requests,
    jobs,
    lifecycle,
  };
}

/** The cell's origin, when it has one: downloads of images no node holds, one per image cell-wide. */
function composeOrigin(
  options: ConductorOptions,
  parts: {
    store: ImageStore;
    locks: NodeLockManager;
    holders: ImageHolderIndex;
    metrics: ConductorMetrics;
    log: PinoLogger;
  },
): OriginDownload | undefined {
  if (options.origin === undefined) return undefined;
  const { store, locks, holders, metrics, log } = parts;
  const originLocks = originLockManager({
    root: options.locks.root,
    conductorId: options.conductorId,
    timings: locks.timings,
    onEvent: (event) => metrics.recordLockEvent(event),
  });
  return new OriginDownload(store, locks, originLocks, holders, new OriginClient(options.origin), log);
}

/** The background rounds the lifecycle starts with the consumer: cache cleaner, leftover sweep, job retention. */
function composeBackground(
  options: ConductorOptions,
  parts: {
    store: ImageStore;
    locks: NodeLockManager;
    holders: ImageHolderIndex;
    log: (part: string) => PinoLogger;
  },
): { cleaner: CleanerRounds; sweep: LeftoverSweep; retention: JobRetention } {
  const { store, locks, holders, log } = parts;
  const listNodes = () => store.entries.listNodes();
  const { policy, ...rounds } = options.cleaner;
  const cleanerLog = log('cleaner');
  const fsOps = new RoundFsOps();
  const counted = fsOps.parts(store, ['entries', 'markers']);
  const cleaner = new CleanerRounds(new CacheCleaner(counted, locks, policy, cleanerLog), {
    fsOps,
    ...rounds,
    lease: roundLease(locks, 'cache-cleaner', rounds.intervalMs),
    listNodes,
    onDeleted: (node, imageId) => holders.forget(node, imageId),
    log: cleanerLog,
  });
  const sweep = new LeftoverSweep(store.entries, locks, {
    ...options.sweep,
    lease: roundLease(locks, 'leftover-sweep', options.sweep.intervalMs),
    listNodes,
    log: log('sweep'),
  });
  const retention = new JobRetention(store.jobs, {
    answers: store.answers,
    ...options.retention,
    lease: roundLease(locks, 'job-retention', JOB_RETENTION_ROUND_MS),
    log: log('job-retention'),
  });
  return { cleaner, sweep, retention };
}
