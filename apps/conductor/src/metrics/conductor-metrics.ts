import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { type CopyResultStatus, type ReasonCode, PROTOCOLS, readReleaseInfo } from '@app/contracts';
import type { LockEvent } from '@app/locking';

export interface StatsProbes {
  inFlight: () => number;
  brokerReconnects: () => number;
  brokerConnected: () => boolean;
  brokerBlocked: () => boolean;
  topologyRedeclarations: () => number;
  /** The last background round's duration in ms, by round (undefined: none ran here yet). */
  backgroundRounds?: () => Record<string, number | undefined>;
  /** The last background round's calls through its file-system seams, by round (round-fs-ops.ts). */
  backgroundRoundFsOps?: () => Record<string, number | undefined>;
}

export interface ConductorTotals {
  completed: number;
  alreadyPresent: number;
  failed: number;
  failedByReason: Partial<Record<ReasonCode, number>>;
  retried: number;
  deadLettered: number;
  handedBack: number;
  coalesced: number;
  bytes: number;
  lockTakeovers: number;
  locksLost: number;
  /** Deliveries with x-icc-* headers no conductor of this cell signed (set by a requester): ignored. */
  untrustedHeaders: number;
}

/**
 * Everything the conductor counts, in one place: the totals of GET /status and the Prometheus metrics
 * are updated by the same calls, so they cannot disagree.
 */
export class ConductorMetrics {
  readonly registry = new Registry();
  readonly totals: ConductorTotals = {
    completed: 0,
    alreadyPresent: 0,
    failed: 0,
    failedByReason: {},
    retried: 0,
    deadLettered: 0,
    handedBack: 0,
    coalesced: 0,
    bytes: 0,
    lockTakeovers: 0,
    locksLost: 0,
    untrustedHeaders: 0,
  };

  private readonly results = new Counter({
    name: 'icc_results_total',
    help: 'Answered copy requests by status and reason',
    labelNames: ['status', 'reason'],
    registers: [this.registry],
  });
  private readonly bytesCopied = new Counter({
    name: 'icc_bytes_copied_total',
    help: 'Bytes copied into destination caches',
    registers: [this.registry],
  });
  private readonly copyDuration = new Histogram({
    name: 'icc_copy_duration_seconds',
    help: 'Request handling time, from the first time a conductor saw it to its result',
    labelNames: ['status'],
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800],
    registers: [this.registry],
  });
  private readonly lockWait = new Histogram({
    name: 'icc_lock_wait_seconds',
    help: 'Time spent waiting for the source and destination locks of a copy',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
    registers: [this.registry],
  });
  private readonly retried = new Counter({
    name: 'icc_retried_total',
    help: 'Requests sent to the delayed retry path, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  private readonly deadLettered = new Counter({
    name: 'icc_dead_lettered_total',
    help: 'Requests dead-lettered, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  private readonly handedBack = new Counter({
    name: 'icc_handed_back_total',
    help: 'Requests returned to the queue unfinished at shutdown',
    registers: [this.registry],
  });
  private readonly coalesced = new Counter({
    name: 'icc_coalesced_total',
    help: 'Requests answered by a copy already running for the same image and destination',
    registers: [this.registry],
  });
  private readonly untrustedHeaders = new Counter({
    name: 'icc_untrusted_headers_total',
    help: 'Deliveries whose x-icc-* headers no conductor of the cell signed (ignored)',
    registers: [this.registry],
  });
  private readonly lockEvents = new Counter({
    name: 'icc_lock_events_total',
    help: 'Lock takeovers of stale holders, lost locks and lock wait timeouts',
    labelNames: ['event'],
    registers: [this.registry],
  });

  private probes: StatsProbes = {
    inFlight: () => 0,
    brokerReconnects: () => 0,
    brokerConnected: () => false,
    brokerBlocked: () => false,
    topologyRedeclarations: () => 0,
  };

  /** `build`: which release this is (default: this package's); one series of value 1, the Prometheus way. */
  constructor(build: { version: string } = readReleaseInfo()) {
    new Gauge({
      name: 'icc_build_info',
      help: 'The release this conductor runs (label version) and the shared-format versions it speaks',
      labelNames: ['version', 'protocols'],
      registers: [this.registry],
    }).set({ version: build.version, protocols: protocolsLabel() }, 1);
    const probes = () => this.probes;
    new Gauge({
      name: 'icc_copies_in_flight',
      help: 'Copies running now',
      registers: [this.registry],
      collect() {
        this.set(probes().inFlight());
      },
    });
    new Gauge({
      name: 'icc_broker_reconnects',
      help: 'Reconnections to RabbitMQ since start',
      registers: [this.registry],
      collect() {
        this.set(probes().brokerReconnects());
      },
    });
    new Gauge({
      name: 'icc_broker_connected',
      help: '1 while connected to RabbitMQ',
      registers: [this.registry],
      collect() {
        this.set(probes().brokerConnected() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'icc_broker_blocked',
      help: '1 while RabbitMQ blocks the connection (resource alarm)',
      registers: [this.registry],
      collect() {
        this.set(probes().brokerBlocked() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'icc_topology_redeclarations',
      help: 'Times the cell topology was declared again after a queue or exchange was found missing',
      registers: [this.registry],
      collect() {
        this.set(probes().topologyRedeclarations());
      },
    });
    new Gauge({
      name: 'icc_background_round_seconds',
      help: 'Duration of the last background round this conductor ran (leftover-sweep, cache-cleaner, job-retention, holder-index scan)',
      labelNames: ['round'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [round, ms] of Object.entries(probes().backgroundRounds?.() ?? {}))
          if (ms !== undefined) this.set({ round }, ms / 1000);
      },
    });
    new Gauge({
      name: 'icc_background_round_fs_ops',
      help: 'File-system calls of the last background round this conductor ran, counted through its seams (leftover-sweep, cache-cleaner, job-retention, holder-index scan)',
      labelNames: ['round'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [round, ops] of Object.entries(probes().backgroundRoundFsOps?.() ?? {}))
          if (ops !== undefined) this.set({ round }, ops);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'icc_' });
  }

  /** Gauges read live values from the parts that own them (wired once they exist). */
  attachProbes(probes: StatsProbes): void {
    this.probes = probes;
  }

  recordResult(
    status: CopyResultStatus,
    reason: ReasonCode | undefined,
    bytes: number,
    totalMs: number,
    lockWaitMs?: number,
  ): void {
    if (status === 'completed') this.totals.completed++;
    else if (status === 'already-present') this.totals.alreadyPresent++;
    else {
      this.totals.failed++;
      if (reason) this.totals.failedByReason[reason] = (this.totals.failedByReason[reason] ?? 0) + 1;
    }
    this.totals.bytes += bytes;
    this.results.inc({ status, reason: reason ?? '' });
    if (bytes > 0) this.bytesCopied.inc(bytes);
    this.copyDuration.observe({ status }, totalMs / 1000);
    if (lockWaitMs !== undefined) this.lockWait.observe(lockWaitMs / 1000);
  }

  recordRetry(reason: ReasonCode): void {
    this.totals.retried++;
    this.retried.inc({ reason });
  }

  recordDeadLetter(reason: ReasonCode): void {
    this.totals.deadLettered++;
    this.deadLettered.inc({ reason });
  }

  recordHandedBack(): void {
    this.totals.handedBack++;
    this.handedBack.inc();
  }

  recordUntrustedHeaders(): void {
    this.totals.untrustedHeaders++;
    this.untrustedHeaders.inc();
  }

  recordCoalesced(): void {
    this.totals.coalesced++;
    this.coalesced.inc();
  }

  recordLockEvent(event: LockEvent): void {
    if (event.type === 'acquired' && event.tookOverStale) {
      this.totals.lockTakeovers++;
      this.lockEvents.inc({ event: 'takeover' });
    } else if (event.type === 'lost') {
      this.totals.locksLost++;
      this.lockEvents.inc({ event: 'lost' });
    } else if (event.type === 'timed-out') this.lockEvents.inc({ event: 'timeout' });
  }
}

/** `wire=1,cacheLayout=1,...`: the shared-format versions as one label value. */
export function protocolsLabel(): string {
  return Object.entries(PROTOCOLS)
    .map(([name, v]) => `${name}=${v}`)
    .join(',');
}
