import { Controller, Get, Inject, Res, UseGuards } from '@nestjs/common';
import type { Response } from 'express';
import { ConductorStats } from '../status/conductor-stats';
import { AdminTokenGuard } from './admin-token.guard';

@Controller('metrics')
@UseGuards(AdminTokenGuard)
export class MetricsController {
  constructor(@Inject(ConductorStats) private readonly stats: ConductorStats) {}

  /** Prometheus text exposition of the conductor's registry. */
  @Get()
  async metrics(@Res({ passthrough: true }) response: Response): Promise<string> {
    response.setHeader('Content-Type', this.stats.registry.contentType);
    return this.stats.registry.metrics();
  }
}
