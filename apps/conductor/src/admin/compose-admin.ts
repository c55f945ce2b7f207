import { readReleaseInfo } from '@app/contracts';
import type { Conductor } from '../compose-conductor';
import { RecentJobs, recentJobs } from '../jobs/recent-jobs';
import type { CacheRootCheckView } from '../cache-root/cache-root-check';
import { AdminAuth } from './admin-auth';
import { LockTable } from './lock-table';
import { QueueDepths } from './queue-depths';
import { ReadinessProbe } from './readiness-probe';
import { type StaticPage, loadStatusPage } from './status-page/status-page';
import { StatusReport } from './status-report';

/** The admin endpoint's plain classes, which its controllers call. */
export interface AdminParts {
  auth: AdminAuth;
  statusPage: StaticPage;
  statusReport: StatusReport;
  lockTable: LockTable;
  readiness: ReadinessProbe;
}

/**
 * Composes the admin endpoint's parts from the conductor's, every dependency passed by name. They read the
 * conductor and change nothing. `startCheck`: what the start-up check of CACHE_ROOT measured, shown on /status.
 */
export function composeAdmin(
  conductor: Conductor,
  startCheck: { cacheRootCheck?: CacheRootCheckView } = {},
): AdminParts {
  const { options, broker, lifecycle, topology, store } = conductor;
  const log = conductor.rootLogger.child({ part: 'admin' });
  return {
    auth: new AdminAuth(options.admin.token),
    statusPage: loadStatusPage(),
    statusReport: new StatusReport({
      identity: {
        conductorId: options.conductorId,
        cellId: options.cell.cellId,
        version: readReleaseInfo().version,
        concurrency: options.lifecycle.concurrency,
        requestQueue: topology.requestQueue.name,
      },
      broker,
      intake: lifecycle,
      copies: conductor.coordinator,
      stats: conductor.metrics,
      queues: new QueueDepths({ broker, topology, log }),
      reads: conductor.sources,
      cleaner: conductor.cleaner,
      sweep: conductor.sweep,
      holders: conductor.holders,
      retention: conductor.retention,
      origin: conductor.origin ?? null,
      bandwidth: conductor.bandwidth,
      jobs: new RecentJobs(() => recentJobs(store.jobs)),
      cell: conductor.heartbeat,
      cacheRootCheck: startCheck.cacheRootCheck,
    }),
    lockTable: new LockTable(options.admin.lockTable),
    readiness: new ReadinessProbe({
      broker,
      intake: lifecycle,
      cacheRoot: options.store.root,
      cacheRootGuard: conductor.cacheRoot,
      conductorId: options.conductorId,
      log,
    }),
  };
}
