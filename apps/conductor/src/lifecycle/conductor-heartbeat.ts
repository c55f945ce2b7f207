import { hostname } from 'node:os';
import { type Logger, PROTOCOLS, readReleaseInfo, errorText } from '@app/contracts';
import {
  type CellConductor,
  type ConductorRecord,
  ConductorRecords,
  judgeConductors,
} from '@app/image-store';
import type { Logger as PinoLogger } from 'pino';
import type { ConductorConfig } from '../config/conductor-config';

/** The cell's conductors as this conductor last listed them (GET /status → conductors). */
export interface CellConductorsView {
  /** When the records were last read; null before the first listing. */
  listedAt: string | null;
  conductors: Array<{
    conductorId: string;
    state: CellConductor['state'];
    ageMs: number;
    host?: string;
    version?: string;
    protocols?: Record<string, number>;
    startedAt?: string;
    lastBeatAt?: string;
    problem?: string;
  }>;
  /** Records of dead conductors (and broken files) this conductor removed since its start. */
  collected: number;
}

export interface ConductorHeartbeatOptions {
  records: Pick<ConductorRecords, 'write' | 'list' | 'remove' | 'removeAbandonedTemporaries'>;
  self: Pick<ConductorRecord, 'conductorId' | 'host' | 'pid' | 'version' | 'protocols' | 'requires'>;
  beatMs: number;
  deadMs: number;
  /** Every this many beats, the cell's records are listed and dead ones collected (default 6). */
  listEvery?: number;
  log: Pick<Logger, 'info' | 'warn'>;
  /** Wall-clock ms (the record carries wall-clock times; see judgeConductors). */
  now?: () => number;
}

/**
 * Keeps this conductor's record in the shared folder: one write per CONDUCTOR_BEAT_MS and nothing else on
 * the beat; every few beats one listing of `.icc-conductors/` (a handful of small files, never a walk of the
 * nodes), which feeds /status and removes the records of dead conductors. A write that does not come back
 * (a hung mount) is never joined by a second one: each would hold another of Node's few file-system
 * threads, and the CacheRootGuard deals with the hang itself.
 */
export class ConductorHeartbeat {
  private timer?: NodeJS.Timeout;
  private pending?: Promise<void>;
  private beats = 0;
  private readonly startedAt: string;
  private view: CellConductorsView = { listedAt: null, conductors: [], collected: 0 };
  private lastProblem?: string;

  constructor(private readonly options: ConductorHeartbeatOptions) {
    this.startedAt = new Date(this.now()).toISOString();
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Writes the first record and beats from then on (unref'd: it never keeps the process alive). */
  start(): void {
    if (this.timer) return;
    this.tick();
    this.timer = setInterval(() => this.tick(), this.options.beatMs).unref();
  }

  /** One beat: skipped while the last one has not come back. */
  tick(): Promise<void> {
    if (this.pending) return this.pending;
    const listNow = this.beats % (this.options.listEvery ?? 6) === 0;
    this.pending = this.beat(listNow).finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async beat(list: boolean): Promise<void> {
    const record: ConductorRecord = {
      v: 1,
      ...this.options.self,
      startedAt: this.startedAt,
      lastBeatAt: new Date(this.now()).toISOString(),
      beat: this.beats++,
    };
    try {
      await this.options.records.write(record);
      if (list) await this.listAndCollect();
      this.noteProblem(undefined);
    } catch (error) {
      this.noteProblem(errorText(error));
    }
  }

  private async listAndCollect(): Promise<void> {
    const now = this.now();
    const cell = judgeConductors(await this.options.records.list(), now, this.options.deadMs);
    let collected = 0;
    for (const c of cell) {
      if (
        c.state === 'live' ||
        c.ageMs <= this.options.deadMs ||
        c.conductorId === this.options.self.conductorId
      )
        continue;
      await this.options.records.remove(c.conductorId);
      collected++;
      this.options.log.info(
        { conductor: c.conductorId, state: c.state, ageMs: c.ageMs, version: c.record?.version },
        'removed the record of a dead conductor',
      );
    }
    await this.options.records.removeAbandonedTemporaries(this.options.deadMs, now);
    this.view = {
      listedAt: new Date(now).toISOString(),
      conductors: cell.map((c) => ({
        conductorId: c.conductorId,
        state: c.state,
        ageMs: Math.round(c.ageMs),
        ...(c.record && {
          host: c.record.host,
          version: c.record.version,
          protocols: c.record.protocols,
          startedAt: c.record.startedAt,
          lastBeatAt: c.record.lastBeatAt,
        }),
        ...(c.problem !== undefined && { problem: c.problem }),
      })),
      collected: this.view.collected + collected,
    };
  }

  private noteProblem(problem: string | undefined): void {
    if (problem === this.lastProblem) return;
    if (problem !== undefined) this.options.log.warn({ problem }, "could not write this conductor's record");
    else if (this.lastProblem !== undefined)
      this.options.log.info({}, "this conductor's record is written again");
    this.lastProblem = problem;
  }

  cell(): CellConductorsView {
    return this.view;
  }

  /**
   * Stops beating and removes the record (a clean stop: the conductor is gone now, not CONDUCTOR_DEAD_MS
   * later). A beat still under way is waited for, so it cannot write the record again after the removal;
   * one that does not come back within a beat (a hung mount) leaves the record to die by its age.
   */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    const pending = this.pending;
    if (pending) {
      let timeout: NodeJS.Timeout | undefined;
      const settled = await Promise.race([
        pending.then(() => true),
        new Promise<false>((resolve) => (timeout = setTimeout(() => resolve(false), this.options.beatMs))),
      ]);
      clearTimeout(timeout);
      if (!settled) return;
    }
    await this.options.records.remove(this.options.self.conductorId).catch(() => undefined);
  }
}

/**
 * The shared formats this release writes in the cell, at the lowest version it writes: the conductors beside
 * it must speak at least these. A contract step (docs/upgrades.md) raises one.
 */
export const REQUIRED_PROTOCOLS: Readonly<Record<string, number>> = {
  wire: 1,
  cacheLayout: 1,
  locks: 1,
  retrySignature: 1,
  jobRecords: 1,
};

/** This process's heartbeat, from its config. */
export function conductorHeartbeat(
  config: Pick<ConductorConfig, 'CACHE_ROOT' | 'CONDUCTOR_ID' | 'CONDUCTOR_BEAT_MS' | 'CONDUCTOR_DEAD_MS'>,
  log: PinoLogger,
): ConductorHeartbeat {
  return new ConductorHeartbeat({
    records: new ConductorRecords(config.CACHE_ROOT),
    self: {
      conductorId: config.CONDUCTOR_ID,
      host: hostname(),
      pid: process.pid,
      version: readReleaseInfo().version,
      protocols: { ...PROTOCOLS },
      requires: { ...REQUIRED_PROTOCOLS },
    },
    beatMs: config.CONDUCTOR_BEAT_MS,
    deadMs: config.CONDUCTOR_DEAD_MS,
    log: log.child({ part: 'conductors' }),
  });
}
