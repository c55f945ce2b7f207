import {
  type CanActivate,
  type ExecutionContext,
  Inject,
  Injectable,
  UnauthorizedException,
} from '@nestjs/common';
import type { Request, Response } from 'express';
import { AdminAuth } from './admin-auth';

/** Every admin route except health and the empty page shell: `Authorization: Bearer <ADMIN_TOKEN>`. */
@Injectable()
export class AdminTokenGuard implements CanActivate {
  constructor(@Inject(AdminAuth) private readonly auth: AdminAuth) {}

  canActivate(context: ExecutionContext): boolean {
    const http = context.switchToHttp();
    const verdict = this.auth.check(http.getRequest<Request>().headers.authorization);
    if (verdict.ok) return true;
    http.getResponse<Response>().setHeader('WWW-Authenticate', 'Bearer realm="icc-admin"');
    throw new UnauthorizedException({ statusCode: 401, error: 'Unauthorized', message: verdict.reason });
  }
}
