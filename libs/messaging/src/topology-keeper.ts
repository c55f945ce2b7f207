import type { ChannelModel } from 'amqplib';
import { type CellTopology, cellQueues, type Logger } from '@app/contracts';
import type { BrokerConnectionEvents, LiveModel } from './connection-views';
import { declareCellTopology } from './declare-topology';
import { isNotFound } from './errors';
import { errorFields } from './logger';

/** What the connection knows about its topology's health, for status pages. */
export interface TopologyHealth {
  /** Re-declarations after something was found missing (the declaration of each (re)connect is not counted). */
  redeclarations: number;
  /** Why the last re-declaration happened (e.g. `consumer of icc.c.requests cancelled by the server`). */
  lastCause: string | null;
  lastRedeclaredAt: string | null;
  /** Re-declarations that failed (not connected, refused); retried at the next report or check. */
  failures: number;
  lastError: string | null;
  /**
   * Per queue or exchange found missing (deleted under us), the re-declarations it caused and the last
   * one. What a queue held when it was deleted is gone with it.
   */
  missing: Record<string, { redeclarations: number; lastCause: string; lastAt: string }>;
}

/** What the keeper uses of its connection. */
export interface TopologyConnection {
  readonly logger: Logger;
  /** True while the broker blocks the connection (see BrokerConnection.blocked). */
  isBlocked(): boolean;
  current(): LiveModel | undefined;
  waitForLive(timeoutMs: number): Promise<LiveModel>;
  announce(redeclared: BrokerConnectionEvents['topology-redeclared']): void;
}

/** One passive declare of the periodic check, and the cause it reports when the broker answers 404. */
export interface PassiveCheck {
  kind: 'queue' | 'exchange';
  name: string;
  cause: string;
}

/**
 * Keeps the cell topology of one connection in place: declares it on each (re)connect, declares it again
 * when a queue or exchange is reported or found missing (one declaration for concurrent reports), runs
 * the periodic passive check, and keeps the history a status page shows.
 */
export class TopologyKeeper {
  private readonly health: TopologyHealth = {
    redeclarations: 0,
    lastCause: null,
    lastRedeclaredAt: null,
    failures: 0,
    lastError: null,
    missing: {},
  };
  /** Names reported missing since the last declaration: counted once each when it is declared again. */
  private readonly reportedMissing = new Map<string, string>();
  private repairing: Promise<void> | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private checking = false;

  constructor(
    private readonly topologies: readonly CellTopology[],
    private readonly connection: TopologyConnection,
  ) {}

  healthView(): TopologyHealth {
    return { ...this.health, missing: { ...this.health.missing } };
  }

  /** Declares every topology on a throwaway channel of `model`; rejects when the broker refuses. */
  async declare(model: ChannelModel): Promise<void> {
    if (this.topologies.length === 0) return;
    const channel = await model.createChannel();
    // Declaration errors reject the awaited call; the event only needs a listener so it does not throw.
    channel.on('error', () => {});
    for (const topology of this.topologies) await declareCellTopology(channel, topology);
    await channel.close();
  }

  /** See BrokerConnection.repairTopology. */
  repair(cause: string, timeoutMs = 10_000, missing?: string): Promise<void> {
    if (missing !== undefined && !this.reportedMissing.has(missing)) this.reportedMissing.set(missing, cause);
    this.repairing ??= this.redeclare(cause, timeoutMs).finally(() => {
      this.repairing = undefined;
    });
    return this.repairing;
  }

  /** Starts the periodic passive check (none for 0 ms or no topology). */
  startChecks(everyMs: number): void {
    if (everyMs <= 0 || this.topologies.length === 0) return;
    this.checkTimer = setInterval(() => void this.check(), everyMs);
    this.checkTimer.unref();
  }

  stopChecks(): void {
    clearInterval(this.checkTimer);
  }

  private async redeclare(cause: string, timeoutMs: number): Promise<void> {
    const { logger } = this.connection;
    try {
      const { model } = await this.connection.waitForLive(timeoutMs);
      await this.declare(model);
    } catch (error) {
      this.health.failures += 1;
      this.health.lastError = `${cause}: ${errorFields(error).err.message}`;
      logger.warn({ cause, ...errorFields(error) }, 'could not declare the topology again');
      throw error;
    }
    this.health.redeclarations += 1;
    this.health.lastCause = cause;
    this.health.lastRedeclaredAt = new Date().toISOString();
    const missing = [...this.reportedMissing.keys()];
    this.recordMissing(this.health.lastRedeclaredAt);
    logger.warn({ cause, missing, redeclarations: this.health.redeclarations }, 'topology declared again');
    this.connection.announce({ cause, redeclarations: this.health.redeclarations, missing });
  }

  /** Moves the names reported missing into the per-name history; a lost queue's loss is logged. */
  private recordMissing(at: string): void {
    const queues = new Set(this.topologies.flatMap((t) => cellQueues(t).map((q) => q.name)));
    for (const [name, cause] of this.reportedMissing) {
      const seen = this.health.missing[name];
      this.health.missing[name] = {
        redeclarations: (seen?.redeclarations ?? 0) + 1,
        lastCause: cause,
        lastAt: at,
      };
      if (queues.has(name))
        this.connection.logger.warn(
          { queue: name, cause, times: this.health.missing[name].redeclarations },
          'a queue was deleted: the messages it held are gone; their requesters get no answer unless they send them again (same requestId)',
        );
    }
    this.reportedMissing.clear();
  }

  /** One passive check of every queue and exchange; a missing one is repaired. Skipped while blocked. */
  private async check(): Promise<void> {
    const live = this.connection.current();
    if (!live || this.connection.isBlocked() || this.checking || this.repairing) return;
    this.checking = true;
    let missing: PassiveCheck | undefined;
    try {
      const channel = await live.model.createChannel();
      channel.on('error', () => {}); // a 404 rejects the awaited check; the event needs a listener
      try {
        for (const check of passiveChecks(this.topologies)) {
          missing = check;
          if (check.kind === 'queue') await channel.checkQueue(check.name);
          else await channel.checkExchange(check.name);
        }
        missing = undefined;
        await channel.close();
      } catch (error) {
        if (!isNotFound(error)) missing = undefined;
        channel.close().catch(() => {});
        if (!missing) throw error;
      }
    } catch (error) {
      this.connection.logger.debug(
        { ...errorFields(error) },
        'topology check failed (connection busy or lost)',
      );
    } finally {
      this.checking = false;
    }
    if (missing) await this.repair(missing.cause, undefined, missing.name).catch(() => {});
  }
}

/** The passive declares of one check, in order: each topology's queues, then its events exchange. */
export function passiveChecks(topologies: readonly CellTopology[]): PassiveCheck[] {
  return topologies.flatMap((topology) => [
    ...cellQueues(topology).map((queue) => ({
      kind: 'queue' as const,
      name: queue.name,
      cause: `passive check: queue ${queue.name} not found`,
    })),
    {
      kind: 'exchange' as const,
      name: topology.eventsExchange.name,
      cause: `passive check: exchange ${topology.eventsExchange.name} not found`,
    },
  ]);
}
