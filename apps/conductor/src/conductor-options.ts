import type { CleanerPolicy } from '@app/cache-cleaner';
import type { ImageStoreOptions } from '@app/image-store';
import type { NodeLockManagerOptions } from '@app/locking';
import type { BrokerConnectionOptions } from '@app/messaging';
import type { CleanerRoundsOptions } from './background/cleaner-rounds';
import type { JobRetentionOptions } from './background/job-retention';
import type { LeftoverSweepOptions } from './background/leftover-sweep';
import { hasCap } from './config/byte-rate-caps';
import { type ConductorConfig, cacheRootHangExitMs } from './config/conductor-config';
import type { NodeBandwidthCaps } from './copy/node-bandwidth';
import type { SourceSelectorOptions } from './copy/source-selector';
import type { OriginOptions } from './origin/origin-client';

/**
 * Passive checks of the cell's queues and exchange: a queue deleted under a running conductor is declared
 * again within this even when nothing publishes to it (e.g. the dead-letter target of the request queue).
 */
const TOPOLOGY_CHECK_MS = 5_000;
/** Jobs-queue messages one conductor works on at once (a purge holds its message until it is done). */
const JOBS_PREFETCH = 4;

/**
 * What each part of the conductor is told, derived from the configuration here and nowhere else:
 * compose-conductor.ts adds only the parts themselves, the logger and the callbacks between parts. Plain
 * data, so a spec can check that every setting reaches a part.
 */
export function conductorOptions(config: ConductorConfig) {
  const root = config.CACHE_ROOT;
  const conductorId = config.CONDUCTOR_ID;
  return {
    conductorId,
    cell: {
      cellId: config.CELL_ID,
      retryDelaysMs: config.RETRY_DELAYS_MS,
      maxAttempts: config.MAX_ATTEMPTS,
    },
    store: {
      root,
      copyWorkers: config.HASH_WORKERS,
      swarmStaleMs: config.LOCK_STALE_MS,
    } satisfies ImageStoreOptions,
    broker: {
      url: config.AMQP_URL,
      connectionName: `conductor-${conductorId}`,
      topologyCheckMs: TOPOLOGY_CHECK_MS,
    } satisfies Partial<BrokerConnectionOptions>,
    locks: {
      root,
      conductorId,
      requireNodeFolder: true,
      timings: {
        staleMs: config.LOCK_STALE_MS,
        updateMs: config.LOCK_UPDATE_MS,
        safetyMarginMs: config.LOCK_SAFETY_MARGIN_MS,
        pollMs: config.LOCK_POLL_MS,
      },
    } satisfies NodeLockManagerOptions,
    sources: { readLimit: config.NODE_READ_LIMIT, conductorId } satisfies Partial<SourceSelectorOptions>,
    bandwidth: {
      read: config.NODE_READ_BPS,
      write: config.NODE_WRITE_BPS,
      backgroundRead: config.BACKGROUND_READ_BPS,
      backgroundWrite: config.BACKGROUND_WRITE_BPS,
    } satisfies NodeBandwidthCaps,
    copy: {
      lockWaitMs: config.LOCK_WAIT_MS,
      fromPartialCopies:
        config.SHARE_PIECES === 'on' ||
        (config.SHARE_PIECES === 'auto' && (hasCap(config.NODE_READ_BPS) || hasCap(config.NODE_WRITE_BPS))),
    },
    progressIntervalMs: config.PROGRESS_INTERVAL_MS,
    /** Absent: the cell has no origin (a copy nobody holds fails SOURCE_MISSING). */
    origin:
      config.ORIGIN_URL === undefined
        ? undefined
        : ({
            urlTemplate: config.ORIGIN_URL,
            authHeader: config.ORIGIN_AUTH_HEADER,
            checksumHeader: config.ORIGIN_CHECKSUM_HEADER,
            attempts: config.ORIGIN_ATTEMPTS,
            idleTimeoutMs: config.ORIGIN_IDLE_TIMEOUT_MS,
          } satisfies OriginOptions),
    cleaner: {
      policy: {
        maxUnusedMs: config.CLEANER_MAX_UNUSED_MS,
        budgetBytes: config.CLEANER_NODE_BUDGET_BYTES,
        graceMs: config.CLEANER_GRACE_MS,
      } satisfies Partial<CleanerPolicy>,
      enabled: config.CLEANER_ENABLED,
      intervalMs: config.CLEANER_INTERVAL_MS,
    } satisfies Partial<CleanerRoundsOptions> & { policy: Partial<CleanerPolicy> },
    sweep: {
      intervalMs: config.LEFTOVER_SWEEP_MS,
      resumableKeepMs: config.RESUMABLE_KEEP_MS,
      root,
    } satisfies Partial<LeftoverSweepOptions>,
    retention: { keepMs: config.JOB_KEEP_MS } satisfies Partial<JobRetentionOptions>,
    cacheRootGuard: {
      cacheRoot: root,
      probeMs: config.CACHE_ROOT_PROBE_MS,
      hangExitAfterMs: cacheRootHangExitMs(config),
    },
    heartbeat: {
      CACHE_ROOT: root,
      CONDUCTOR_ID: conductorId,
      CONDUCTOR_BEAT_MS: config.CONDUCTOR_BEAT_MS,
      CONDUCTOR_DEAD_MS: config.CONDUCTOR_DEAD_MS,
    },
    jobs: { prefetch: JOBS_PREFETCH, purgeWaitMs: config.LOCK_WAIT_MS },
    lifecycle: { concurrency: config.COPY_CONCURRENCY, graceMs: config.SHUTDOWN_GRACE_MS },
    admin: {
      token: config.ADMIN_TOKEN,
      lockTable: { cacheRoot: root, staleMs: config.LOCK_STALE_MS, conductorId },
    },
  };
}

export type ConductorOptions = ReturnType<typeof conductorOptions>;
