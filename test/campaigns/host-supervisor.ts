import { performance } from 'node:perf_hooks';
import { sleep } from '../support/async';
import type { ConductorFleet, FleetExit, FleetMember } from './conductor-fleet';

/** What a host's supervisor did about one conductor that ended without the campaign ending it. */
export interface HostRestart {
  host: string;
  exited: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** hang: it left because CACHE_ROOT stopped answering (its stderr line); other: any other end. */
  why: 'hang' | 'other';
  /** On the campaign's clock. */
  exitedAtMs: number;
  /** The conductor that took its place, and how long the host was without one. */
  restartedAs?: string;
  downMs?: number;
  /** Starts that failed before (exit 78 of the start-up check, or no start in time). */
  failedStarts: number;
}

export interface HostSupervisorOptions {
  hostOf: (conductorId: string) => string;
  /** Starts a conductor on the host; resolves once it is ready, rejects (its process ended) otherwise. */
  start: (host: string) => Promise<FleetMember>;
  /** Whether the host's mount is there and its link up: before that, a start would only fail or hang. */
  mountUsable: (host: string) => boolean;
  /** The campaign's clock (ms since it started), for exitedAtMs. */
  elapsedMs: () => number;
  /** Pause before each start (systemd's RestartSec). */
  delayMs: number;
  /** A host still without a conductor this long after the exit is given up on (and reported). */
  giveUpMs: number;
}

/** The line a conductor writes to stderr before it ends itself on a hung CACHE_ROOT (end-hung-process.ts). */
export const HANG_LINE = 'conductor: CACHE_ROOT hangs:';

/**
 * Each simulated host's service manager, as systemd with Restart=always would be: a conductor that ends
 * without the campaign ending it is started again on its host after `delayMs`, once the host's mount is
 * usable (until then its start-up check would fail with exit 78, or hang), again and again until a start
 * succeeds. Records every such end with its exit code or signal.
 */
export class HostSupervisor {
  readonly restarts: HostRestart[] = [];
  readonly gaveUp: string[] = [];
  private readonly pending = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    fleet: ConductorFleet,
    private readonly options: HostSupervisorOptions,
  ) {
    fleet.onExit((member, exit) => this.exited(member, exit));
  }

  private exited(member: FleetMember, exit: FleetExit): void {
    if (this.stopped) return;
    const restart: HostRestart = {
      host: this.options.hostOf(member.id),
      exited: member.id,
      code: exit.code,
      signal: exit.signal,
      why:
        exit.signal === 'SIGKILL' && member.conductor.child.output.join('').includes(HANG_LINE)
          ? 'hang'
          : 'other',
      exitedAtMs: this.options.elapsedMs(),
      failedStarts: 0,
    };
    this.restarts.push(restart);
    const work = this.restart(restart).finally(() => this.pending.delete(work));
    this.pending.add(work);
  }

  private async restart(restart: HostRestart): Promise<void> {
    const from = performance.now();
    for (;;) {
      await sleep(this.options.delayMs);
      while (!this.stopped && !this.options.mountUsable(restart.host)) await sleep(200);
      if (this.stopped) return;
      if (performance.now() - from > this.options.giveUpMs) {
        this.gaveUp.push(
          `${restart.host}: no conductor within ${this.options.giveUpMs} ms after ${restart.exited} ended`,
        );
        return;
      }
      try {
        const member = await this.options.start(restart.host);
        restart.restartedAs = member.id;
        restart.downMs = Math.round(performance.now() - from);
        return;
      } catch {
        restart.failedStarts++;
      }
    }
  }

  /** Resolves once every restart under way has succeeded or was given up. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /** No restart from now on (the campaign is ending: what ends now, the campaign ended). */
  stop(): void {
    this.stopped = true;
  }
}
