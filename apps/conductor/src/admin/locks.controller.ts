import {
  BadRequestException,
  Controller,
  Get,
  Header,
  Inject,
  Query,
  ServiceUnavailableException,
  UseGuards,
} from '@nestjs/common';
import { InvalidFieldError } from '@app/contracts';
import { AdminTokenGuard } from './admin-token.guard';
import { LockScanTimeoutError, LockTable } from './lock-table';
import { InvalidQueryError } from './locks-query';

@Controller('locks')
@UseGuards(AdminTokenGuard)
export class LocksController {
  constructor(@Inject(LockTable) private readonly locks: LockTable) {}

  /** GET /locks?node=&image= ; 400 names each bad parameter and why; 503 when CACHE_ROOT does not answer. */
  @Get()
  @Header('Cache-Control', 'no-store')
  async list(@Query() query: Record<string, unknown>) {
    try {
      return await this.locks.list(query);
    } catch (error) {
      if (error instanceof InvalidQueryError)
        throw new BadRequestException({
          statusCode: 400,
          error: 'Bad Request',
          message: error.message,
          problems: error.problems,
        });
      if (error instanceof InvalidFieldError)
        throw new BadRequestException({
          statusCode: 400,
          error: 'Bad Request',
          message: error.message,
          problems: [{ parameter: error.field, reason: error.reason }],
        });
      if (error instanceof LockScanTimeoutError)
        throw new ServiceUnavailableException({
          statusCode: 503,
          error: 'Service Unavailable',
          message: error.message,
        });
      throw error;
    }
  }
}
