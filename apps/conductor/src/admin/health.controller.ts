import { Controller, Get, Inject } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { ReadinessIndicator } from './readiness.indicator';

/** Open (no token): load balancers and orchestrators poll these. */
@Controller('health')
export class HealthController {
  constructor(
    @Inject(HealthCheckService) private readonly health: HealthCheckService,
    @Inject(ReadinessIndicator) private readonly indicator: ReadinessIndicator,
  ) {}

  @Get('live')
  live() {
    return this.indicator.liveness();
  }

  /** 200 when ready, 503 with the failing parts otherwise (terminus' body: status, info, error, details). */
  @Get('ready')
  @HealthCheck()
  ready() {
    return this.health.check([() => this.indicator.readiness()]);
  }
}
