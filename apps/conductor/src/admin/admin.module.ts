import { type DynamicModule, Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import type { Conductor } from '../compose-conductor';
import type { CacheRootCheckView } from '../cache-root/cache-root-check';
import { ConductorMetrics } from '../metrics/conductor-metrics';
import { AdminAuth } from './admin-auth';
import { AdminTokenGuard } from './admin-token.guard';
import { STATUS_PAGE } from './admin.tokens';
import { composeAdmin } from './compose-admin';
import { HealthController } from './health.controller';
import { LockTable } from './lock-table';
import { LocksController } from './locks.controller';
import { MetricsController } from './metrics.controller';
import { ReadinessProbe } from './readiness-probe';
import { ReadinessIndicator } from './readiness.indicator';
import { StatusPageController } from './status-page.controller';
import { StatusReport } from './status-report';
import { StatusController } from './status.controller';

/**
 * The admin HTTP endpoint: GET / (status page), /status, /locks, /metrics (bearer token) and
 * /health/live, /health/ready (open). It reads the conductor's parts and changes nothing; the plain
 * classes composeAdmin() makes (StatusReport, QueueDepths, LockTable, ReadinessProbe, AdminAuth) hold the
 * logic, and the controllers only map HTTP to them.
 */
@Module({})
export class AdminModule {
  /** `startCheck`: what the start-up check of CACHE_ROOT measured, shown on /status. */
  static forRoot(
    conductor: Conductor,
    startCheck: { cacheRootCheck?: CacheRootCheckView } = {},
  ): DynamicModule {
    const admin = composeAdmin(conductor, startCheck);
    return {
      module: AdminModule,
      imports: [TerminusModule.forRoot({ logger: false })],
      controllers: [
        StatusPageController,
        StatusController,
        LocksController,
        MetricsController,
        HealthController,
      ],
      providers: [
        { provide: AdminAuth, useValue: admin.auth },
        { provide: STATUS_PAGE, useValue: admin.statusPage },
        { provide: StatusReport, useValue: admin.statusReport },
        { provide: LockTable, useValue: admin.lockTable },
        { provide: ReadinessProbe, useValue: admin.readiness },
        { provide: ConductorMetrics, useValue: conductor.metrics },
        AdminTokenGuard,
        ReadinessIndicator,
      ],
    };
  }
}
