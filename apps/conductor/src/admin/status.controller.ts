import { Controller, Get, Header, Inject, UseGuards } from '@nestjs/common';
import { AdminTokenGuard } from './admin-token.guard';
import { StatusReport } from './status-report';

@Controller('status')
@UseGuards(AdminTokenGuard)
export class StatusController {
  constructor(@Inject(StatusReport) private readonly report: StatusReport) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  status() {
    return this.report.build();
  }
}
