import { Controller, Get, Inject, Res } from '@nestjs/common';
import type { Response } from 'express';
import { STATUS_PAGE } from './admin.tokens';
import type { StaticPage } from './status-page/status-page';

/** GET /: the page shell. Public on purpose: it contains no data, its script fetches with the token. */
@Controller()
export class StatusPageController {
  constructor(@Inject(STATUS_PAGE) private readonly page: StaticPage) {}

  @Get()
  index(@Res() response: Response): void {
    response.set(this.page.headers).status(200).send(this.page.body);
  }
}
