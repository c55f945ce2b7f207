import { type BeforeApplicationShutdown, Inject, Injectable } from '@nestjs/common';
import type { Conductor } from '../compose-conductor';
import { CONDUCTOR } from '../conductor.tokens';

/**
 * Runs the graceful stop when Nest closes (SIGTERM/SIGINT through enableShutdownHooks), before Nest closes
 * the HTTP listener: readiness answers 503 through the whole drain (ConductorLifecycle.stop).
 */
@Injectable()
export class GracefulShutdown implements BeforeApplicationShutdown {
  constructor(
    @Inject(CONDUCTOR)
    private readonly conductor: Pick<Conductor, 'lifecycle' | 'store' | 'cacheRoot'>,
  ) {}

  async beforeApplicationShutdown(): Promise<void> {
    await this.conductor.lifecycle.stop();
    // The copies have ended (finished or handed back): their worker threads may go.
    await this.conductor.store.close();
    this.conductor.cacheRoot.stop();
  }
}
