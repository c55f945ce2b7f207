import { Controller, Get, Inject, Res, UseGuards } from '@nestjs/common';
import type { Response } from 'express';
import { ConductorMetrics } from '../metrics/conductor-metrics';
import { AdminTokenGuard } from './admin-token.guard';

@Controller('metrics')
@UseGuards(AdminTokenGuard)
export class MetricsController {
  constructor(@Inject(ConductorMetrics) private readonly stats: ConductorMetrics) {}

  /** Prometheus text exposition of the conductor's registry. */
  @Get()
  async metrics(@Res({ passthrough: true }) response: Response): Promise<string> {
    response.setHeader('Content-Type', this.stats.registry.contentType);
    return this.stats.registry.metrics();
  }
}
