import { errorText } from '@app/contracts';
import type { Logger } from '@app/contracts';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { BrokerConnection } from '@app/messaging';
import type { CacheRootGuard } from '../cache-root/cache-root-guard';
import type { ConductorLifecycle } from '../lifecycle/conductor-lifecycle';

export interface ReadinessPart {
  up: boolean;
  [detail: string]: unknown;
}

export interface ReadinessReport {
  ready: boolean;
  consumer: ReadinessPart;
  broker: ReadinessPart;
  cacheRoot: ReadinessPart;
}

export interface ReadinessProbeOptions {
  broker: Pick<BrokerConnection, 'state' | 'lastError' | 'blocked'>;
  intake: Pick<ConductorLifecycle, 'state' | 'consumerSubscribed'>;
  cacheRoot: string;
  /** Whether CACHE_ROOT is still the cell's folder: an empty folder left by a dead mount is writable too. */
  cacheRootGuard?: Pick<CacheRootGuard, 'check'>;
  conductorId: string;
  log: Pick<Logger, 'info' | 'warn'>;
  /** A file-system probe slower than this counts as not writable (a hung NFS mount). */
  fsTimeoutMs?: number;
}

/**
 * Ready means: connected to RabbitMQ and not blocked by it (during a memory or disk alarm the broker
 * reads nothing from us, so no answer could be sent), the consumer subscribed and taking work (not draining), and
 * CACHE_ROOT the cell's folder (CacheRootGuard) and writable. ConductorLifecycle.stop() sets 'draining' before it pauses the consumer, and the
 * consumer part is read first and synchronously, so readiness turns false at the very start of a
 * graceful stop, while the HTTP endpoint keeps answering until the drain is over.
 */
export class ReadinessProbe {
  private lastReady?: boolean;
  private fsProbe?: Promise<ReadinessPart>;

  constructor(private readonly options: ReadinessProbeOptions) {}

  async check(): Promise<ReadinessReport> {
    const consumer = this.consumerPart();
    const broker = this.brokerPart();
    const cacheRoot = await this.cacheRootPart();
    const report: ReadinessReport = {
      ready: consumer.up && broker.up && cacheRoot.up,
      consumer,
      broker,
      cacheRoot,
    };
    this.logTransition(report);
    return report;
  }

  private consumerPart(): ReadinessPart {
    const { state, consumerSubscribed } = this.options.intake;
    return { up: state === 'consuming' && consumerSubscribed, state, subscribed: consumerSubscribed };
  }

  private brokerPart(): ReadinessPart {
    const { state, lastError, blocked } = this.options.broker;
    if (state !== 'connected') return { up: false, state, lastError: lastError?.message ?? null };
    return blocked ? { up: false, state, blocked: true } : { up: true, state };
  }

  /** Creates and removes a probe file; one probe at a time, bounded in time. */
  private cacheRootPart(): Promise<ReadinessPart> {
    this.fsProbe ??= this.probeCacheRoot().finally(() => {
      this.fsProbe = undefined;
    });
    return this.fsProbe;
  }

  private async probeCacheRoot(): Promise<ReadinessPart> {
    const cell = await this.options.cacheRootGuard?.check();
    if (cell && !cell.available) return { up: false, cellFolder: false, error: cell.problem };
    const timeoutMs = this.options.fsTimeoutMs ?? 2_000;
    const file = path.join(
      this.options.cacheRoot,
      `.icc-ready-${this.options.conductorId}-${randomBytes(4).toString('hex')}`,
    );
    const probe = (async () => {
      await fsp.writeFile(file, '', { flag: 'wx' });
      await fsp.unlink(file);
    })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    try {
      const outcome = await Promise.race([probe.then(() => 'done' as const), timeout]);
      if (outcome === 'timeout') {
        // The probe goes on in the background; its late outcome is of no interest.
        probe.catch(() => undefined);
        return { up: false, writable: false, error: `no answer from the file system within ${timeoutMs} ms` };
      }
      return { up: true, writable: true };
    } catch (error) {
      return { up: false, writable: false, error: errorText(error) };
    } finally {
      clearTimeout(timer);
    }
  }

  private logTransition(report: ReadinessReport): void {
    if (report.ready === this.lastReady) return;
    const first = this.lastReady === undefined;
    this.lastReady = report.ready;
    if (first && report.ready) return;
    const failing = (['consumer', 'broker', 'cacheRoot'] as const).filter((k) => !report[k].up);
    this.options.log.info(
      { ready: report.ready, failing, consumer: report.consumer.state, broker: report.broker.state },
      report.ready ? 'readiness: ready' : 'readiness: not ready',
    );
  }
}
