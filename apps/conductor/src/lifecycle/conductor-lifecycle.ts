import { type Logger, ReasonError, type CellTopology } from '@app/contracts';
import type { NodeLockManager } from '@app/locking';
import { type BrokerConnection, type Consumer, type Delivery, type Publisher, consume } from '@app/messaging';
import type { CancelWatch } from '../jobs/cancel-watch';

/**
 * What the lifecycle needs of a queue's handler (the copy requests', the jobs'): only to hand it each
 * delivery. Owned here, so that the lifecycle does not depend on the handlers' modules.
 */
export interface QueueHandler {
  handle(delivery: Delivery): Promise<void>;
}

export type LifecycleState = 'starting' | 'consuming' | 'draining' | 'stopped';

/**
 * Starts and stops taking work. Stopping is the graceful path operators rely on: stop consuming, let
 * running copies finish up to a deadline, abort the rest (their messages go back to the queue), then
 * release locks and close the broker connection.
 */
export class ConductorLifecycle {
  private consumer?: Consumer;
  private jobsConsumer?: Consumer;
  private stateValue: LifecycleState = 'starting';

  constructor(
    private readonly deps: {
      broker: BrokerConnection;
      publisher: Publisher;
      topology: CellTopology;
      handler: QueueHandler;
      /** The jobs queue (pre-cache, purge, cancel): consumed and drained beside the requests. */
      jobs?: { handler: QueueHandler; prefetch: number; cancels: CancelWatch };
      locks: NodeLockManager;
      /** Background rounds (cache cleaner, leftover sweep): started with the consumer, stopped before the locks are released. */
      background?: Array<{ start(): void; stop(): Promise<void> }>;
      concurrency: number;
      graceMs: number;
      shutdown: AbortController;
      log: Logger;
    },
  ) {}

  get state(): LifecycleState {
    return this.stateValue;
  }

  get consumerSubscribed(): boolean {
    return this.consumer?.subscribed ?? false;
  }

  get inFlightDeliveries(): number {
    return this.consumer?.inFlightCount ?? 0;
  }

  /**
   * Connects in the background and subscribes as soon as the broker is there: a conductor started while
   * RabbitMQ is down waits (not ready) instead of exiting.
   */
  async start(): Promise<void> {
    const { broker, topology, handler, concurrency } = this.deps;
    broker.start();
    this.consumer = await consume(broker, topology.requestQueue.name, { prefetch: concurrency }, (d) =>
      handler.handle(d),
    );
    const jobs = this.deps.jobs;
    if (jobs)
      this.jobsConsumer = await consume(broker, topology.jobQueue.name, { prefetch: jobs.prefetch }, (d) =>
        jobs.handler.handle(d),
      );
    this.stateValue = 'consuming';
    for (const rounds of this.deps.background ?? []) rounds.start();
  }

  async stop(): Promise<void> {
    if (this.stateValue === 'stopped' || this.stateValue === 'draining') return;
    const { log, graceMs, shutdown } = this.deps;
    this.stateValue = 'draining';
    const backgroundStopped = Promise.all((this.deps.background ?? []).map((rounds) => rounds.stop()));
    const consumer = this.consumer;
    const jobsConsumer = this.jobsConsumer;
    await jobsConsumer?.pause();
    if (consumer) {
      await consumer.pause();
      log.info(
        { inFlight: consumer.inFlightCount, graceMs },
        'draining: consumer paused, waiting for copies in flight',
      );
      const finished = await consumer.drain(graceMs);
      if (!finished) {
        log.warn(
          { inFlight: consumer.inFlightCount },
          'grace period over: aborting copies, handing them back',
        );
        shutdown.abort(new ReasonError('SHUTTING_DOWN', 'the conductor is shutting down'));
        await consumer.drain(10_000);
      }
      await consumer.close();
    }
    shutdown.abort(new ReasonError('SHUTTING_DOWN', 'the conductor is shutting down'));
    // A purge stops between two nodes at the abort and hands its message back (its outcomes so far stay).
    if (jobsConsumer) {
      await jobsConsumer.drain(10_000);
      await jobsConsumer.close();
    }
    this.deps.jobs?.cancels.stop();
    await backgroundStopped;
    await this.deps.locks.releaseAll();
    await this.deps.publisher.close();
    await this.deps.broker.close();
    this.stateValue = 'stopped';
    log.info({}, 'conductor stopped');
  }
}
