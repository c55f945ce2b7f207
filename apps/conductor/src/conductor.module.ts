import { type DynamicModule, Module } from '@nestjs/common';
import { LoggerModule } from 'nestjs-pino';
import type { Conductor } from './compose-conductor';
import { CONDUCTOR } from './conductor.tokens';
import { GracefulShutdown } from './lifecycle/graceful-shutdown';

/**
 * The composed conductor (compose-conductor.ts) inside Nest: its logger for Nest's own lines, and the
 * graceful stop on SIGTERM/SIGINT. Nest wires nothing else; the admin endpoint takes the same conductor.
 */
@Module({})
export class ConductorModule {
  static forRoot(conductor: Conductor): DynamicModule {
    return {
      module: ConductorModule,
      imports: [LoggerModule.forRoot({ pinoHttp: { logger: conductor.rootLogger, autoLogging: false } })],
      providers: [{ provide: CONDUCTOR, useValue: conductor }, GracefulShutdown],
    };
  }
}
