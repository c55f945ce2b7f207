import { errorText } from '@app/contracts';
import type { Logger, CellTopology } from '@app/contracts';
import type { Channel } from 'amqplib';
import { type BrokerConnection, isNotFound } from '@app/messaging';

export interface QueueDepth {
  name: string;
  /** Ready messages (not the ones delivered and unacked). */
  messages: number;
  consumers: number;
}

export interface QueueDepthReport {
  request: QueueDepth;
  /** One per delay tier, ascending delay. */
  retry: (QueueDepth & { delayMs: number })[];
  deadLetter: QueueDepth;
  checkedAt: string;
}

export interface QueueDepthsOptions {
  /** `blocked` and `repairTopology` are optional so that simple fakes do; the conductor passes them. */
  broker: Pick<BrokerConnection, 'state' | 'openChannel'> &
    Partial<Pick<BrokerConnection, 'blocked' | 'repairTopology'>>;
  topology: CellTopology;
  log: Pick<Logger, 'warn'>;
  /** Answers younger than this are served from memory, so polling the status page stays cheap. */
  cacheMs?: number;
  /** How long to wait for a channel. */
  channelTimeoutMs?: number;
  /**
   * A look-up that takes longer is given up (answer: the last known depths, or null), so a broker that
   * stops answering (blocked just now, overloaded) never holds GET /status. Default 2 s.
   */
  lookupTimeoutMs?: number;
  now?: () => number;
}

/**
 * Depths of the cell's request, retry and dead-letter queues, read with passive declares (checkQueue:
 * nothing is created) on one channel of the conductor's own connection. Concurrent callers share one
 * look-up, results are cached for about a second, and while the broker is not connected the answer is
 * null at once (no waiting for a connection inside an HTTP request). While the broker blocks the
 * connection (resource alarm) it would not answer: the last known depths are served (see `checkedAt`).
 * A queue found missing (404) is reported to the connection, which declares the topology again.
 */
export class QueueDepths {
  private channel?: Channel;
  private cached?: { at: number; value: QueueDepthReport | null };
  private pending?: Promise<QueueDepthReport | null>;
  private failing = false;

  constructor(private readonly options: QueueDepthsOptions) {}

  async depths(): Promise<QueueDepthReport | null> {
    if (this.options.broker.state !== 'connected') {
      this.dropChannel();
      return null;
    }
    if (this.options.broker.blocked) return this.cached?.value ?? null;
    const now = this.now();
    if (this.cached && now - this.cached.at < (this.options.cacheMs ?? 1_000)) return this.cached.value;
    this.pending ??= this.look().finally(() => {
      this.pending = undefined;
    });
    return this.bounded(this.pending);
  }

  private async bounded(lookup: Promise<QueueDepthReport | null>): Promise<QueueDepthReport | null> {
    let timer: NodeJS.Timeout | undefined;
    const gaveUp = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.options.lookupTimeoutMs ?? 2_000);
    });
    try {
      const outcome = await Promise.race([lookup, gaveUp]);
      return outcome === 'timeout' ? (this.cached?.value ?? null) : outcome;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the channel (the connection's close would take it along anyway). */
  async close(): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    await channel?.close().catch(() => undefined);
  }

  private async look(): Promise<QueueDepthReport | null> {
    let value: QueueDepthReport | null;
    try {
      const channel = await this.openChannel();
      const { topology } = this.options;
      const check = async (name: string): Promise<QueueDepth> => {
        try {
          const ok = await channel.checkQueue(name);
          return { name, messages: ok.messageCount, consumers: ok.consumerCount };
        } catch (error) {
          if (isNotFound(error))
            this.options.broker
              .repairTopology?.(`passive check: queue ${name} not found`, undefined, name)
              .catch(() => undefined);
          throw error;
        }
      };
      const request = await check(topology.requestQueue.name);
      const retry: QueueDepthReport['retry'] = [];
      for (const q of topology.retryQueues) retry.push({ ...(await check(q.name)), delayMs: q.delayMs });
      const deadLetter = await check(topology.deadLetterQueue.name);
      value = { request, retry, deadLetter, checkedAt: new Date(this.now()).toISOString() };
      this.failing = false;
    } catch (error) {
      // A missing queue closes the channel (404); a lost connection kills it: open a new one next time.
      this.dropChannel();
      if (!this.failing) this.options.log.warn({ err: errorText(error) }, 'could not read queue depths');
      this.failing = true;
      value = null;
    }
    this.cached = { at: this.now(), value };
    return value;
  }

  private async openChannel(): Promise<Channel> {
    if (this.channel) return this.channel;
    const { channel } = await this.options.broker.openChannel(this.options.channelTimeoutMs ?? 2_000);
    // Failures reject the awaited call; the event needs a listener or it would throw.
    channel.on('error', () => undefined);
    channel.on('close', () => {
      if (this.channel === channel) this.channel = undefined;
    });
    this.channel = channel;
    return channel;
  }

  private dropChannel(): void {
    const channel = this.channel;
    this.channel = undefined;
    channel?.close().catch(() => undefined);
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }
}
