import { Inject, Injectable } from '@nestjs/common';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { ReadinessProbe } from './readiness-probe';

/** Terminus' view of the ReadinessProbe: one result key per part (consumer, broker, cacheRoot). */
@Injectable()
export class ReadinessIndicator {
  private readonly startedAt = Date.now();

  constructor(
    @Inject(HealthIndicatorService) private readonly indicators: HealthIndicatorService,
    @Inject(ReadinessProbe) private readonly probe: ReadinessProbe,
  ) {}

  async readiness(): Promise<HealthIndicatorResult> {
    const report = await this.probe.check();
    const result: HealthIndicatorResult = {};
    for (const key of ['consumer', 'broker', 'cacheRoot'] as const) {
      const { up, ...details } = report[key];
      const session = this.indicators.check(key);
      Object.assign(result, up ? session.up(details) : session.down(details));
    }
    return result;
  }

  /**
   * Liveness is "this process answers": it stays up during a graceful stop (draining is not a reason
   * to restart the process; readiness is what takes it out of rotation).
   */
  liveness() {
    const process = this.indicators
      .check('process')
      .up({ pid: global.process.pid, uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000) });
    return { status: 'ok' as const, info: process, error: {}, details: process };
  }
}
