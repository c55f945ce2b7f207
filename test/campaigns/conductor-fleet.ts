import { performance } from 'node:perf_hooks';
import { AdminHttp } from '../support/admin-http';
import type { ChildProcessPool } from '../support/child-processes';
import { ConductorProcess } from '../support/conductor-process';
import { sleep } from '../support/async';

/** exited: it ended by itself (the fleet neither killed nor stopped it). */
export type MemberState = 'live' | 'paused' | 'killed' | 'stopped' | 'exited';

export interface FleetExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One conductor process of a campaign, under the id it runs with (a restart is a new member). */
export interface FleetMember {
  id: string;
  conductor: ConductorProcess;
  state: MemberState;
  admin: AdminHttp;
  resumedAtMono?: number;
}

/** What GET /status said last, per conductor (a killed one keeps its last sample). */
export interface StatusSample {
  at: number;
  brokerState: string;
  reconnects: number;
  totals: Record<string, unknown> & { lockTakeovers?: number; locksLost?: number };
}

/**
 * The conductors of a campaign: started, SIGKILLed, SIGSTOPped and resumed, stopped with SIGTERM, and
 * sampled over their admin endpoint (GET /status) about once a second, so the figures of a conductor
 * that is later killed survive it (lock takeovers are counted by each conductor in memory).
 */
export class ConductorFleet {
  readonly members: FleetMember[] = [];
  readonly lastStatus = new Map<string, StatusSample>();
  /** Every broker state each conductor reported, in order, with the time (ms since the fleet started). */
  readonly brokerStates = new Map<string, Array<{ atMs: number; state: string }>>();
  private sampling = false;
  private samplerLoop?: Promise<void>;
  /** Members the fleet itself is killing or stopping: their end is no news. */
  private readonly ending = new WeakSet<FleetMember>();
  private readonly exitListeners: Array<(member: FleetMember, exit: FleetExit) => void> = [];
  private readonly started = performance.now();

  constructor(
    private readonly pool: ChildProcessPool<unknown>,
    private readonly envFor: (id: string) => Record<string, string>,
    readonly token: string,
    private readonly hardTimeoutMs: number,
    /** Where a member runs (a simulated host: its launcher, entry script, admin address); default here. */
    private readonly placementFor?: (id: string) => {
      launcher: string[];
      script?: string;
      adminHost: string;
    },
  ) {}

  async start(id: string): Promise<FleetMember> {
    const placement = this.placementFor?.(id);
    const conductor = ConductorProcess.start(
      this.pool,
      { ...this.envFor(id), CONDUCTOR_ID: id, ADMIN_TOKEN: this.token },
      this.hardTimeoutMs,
      { script: placement?.script, launcher: placement?.launcher },
    );
    try {
      await conductor.ready(60_000);
    } catch (error) {
      // One that never got ready (refused to start, or hangs in it) must not linger.
      conductor.signal('SIGKILL');
      throw error;
    }
    const member: FleetMember = {
      id,
      conductor,
      state: 'live',
      admin: AdminHttp.of(conductor, this.token, placement?.adminHost),
    };
    this.members.push(member);
    void conductor.exited().then((exit) => {
      if (this.ending.has(member) || (member.state !== 'live' && member.state !== 'paused')) return;
      member.state = 'exited';
      for (const listener of this.exitListeners) listener(member, exit);
    });
    return member;
  }

  /** Called when a member ends by itself (neither kill() nor stop()). */
  onExit(listener: (member: FleetMember, exit: FleetExit) => void): void {
    this.exitListeners.push(listener);
  }

  live(): FleetMember[] {
    return this.members.filter((m) => m.state === 'live');
  }

  running(): FleetMember[] {
    return this.members.filter((m) => m.state === 'live' || m.state === 'paused');
  }

  conductors(): ConductorProcess[] {
    return this.members.map((m) => m.conductor);
  }

  async kill(member: FleetMember): Promise<void> {
    this.ending.add(member);
    member.conductor.signal('SIGKILL');
    member.state = 'killed';
    await member.conductor.exited();
  }

  pause(member: FleetMember): void {
    member.conductor.signal('SIGSTOP');
    member.state = 'paused';
  }

  /** `pausedPastStale`: false for a freeze of a few milliseconds (a look before another signal). */
  resume(member: FleetMember, pausedPastStale = true): void {
    member.conductor.signal('SIGCONT');
    member.state = 'live';
    if (pausedPastStale) member.resumedAtMono = performance.now();
  }

  /** Graceful stop (SIGTERM): resolves with its exit. */
  async stop(member: FleetMember): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    await this.sampleOne(member).catch(() => undefined);
    this.ending.add(member);
    member.conductor.signal('SIGTERM');
    const exit = await member.conductor.exited();
    member.state = 'stopped';
    return exit;
  }

  resumedRecently(conductorId: string, windowMs: number): boolean {
    const member = this.members.find((m) => m.id === conductorId);
    if (!member) return false;
    if (member.state === 'paused') return true;
    return member.resumedAtMono !== undefined && performance.now() - member.resumedAtMono < windowMs;
  }

  /** Polls GET /status of every live conductor every `intervalMs` until stopSampling(). */
  startSampling(intervalMs = 1_000): void {
    this.sampling = true;
    this.samplerLoop = (async () => {
      while (this.sampling) {
        await Promise.all(this.live().map((m) => this.sampleOne(m).catch(() => undefined)));
        await sleep(intervalMs);
      }
    })();
  }

  async stopSampling(): Promise<void> {
    this.sampling = false;
    await this.samplerLoop;
  }

  async sampleOne(member: FleetMember): Promise<StatusSample | undefined> {
    if (member.state !== 'live') return undefined;
    const answer = await member.admin.get('/status');
    if (answer.status !== 200) return undefined;
    const body = answer.json<{
      broker: { state: string; reconnects: number };
      totals: StatusSample['totals'];
    }>();
    const sample = {
      at: Date.now(),
      brokerState: body.broker.state,
      reconnects: body.broker.reconnects,
      totals: body.totals,
    };
    this.lastStatus.set(member.id, sample);
    const states = this.brokerStates.get(member.id) ?? [];
    states.push({ atMs: Math.round(performance.now() - this.started), state: body.broker.state });
    this.brokerStates.set(member.id, states);
    return sample;
  }

  /**
   * Resolves once every live conductor reports no copy in flight, no delivery unacked, and the request and
   * retry queues are empty (twice in a row, a little apart: a retry may be on its way back).
   */
  async waitIdle(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let quietRounds = 0;
    for (;;) {
      const states = await Promise.all(
        this.live().map(async (m) => {
          const answer = await m.admin.get('/status').catch(() => undefined);
          if (!answer || answer.status !== 200) return false;
          const s = answer.json<{
            inFlight: unknown[];
            consumer: { deliveriesInFlight: number };
            queues: { request: { messages: number }; retry: Array<{ messages: number }> } | null;
          }>();
          return (
            s.inFlight.length === 0 &&
            s.consumer.deliveriesInFlight === 0 &&
            s.queues !== null &&
            s.queues.request.messages === 0 &&
            s.queues.retry.every((q) => q.messages === 0)
          );
        }),
      );
      quietRounds = states.length > 0 && states.every(Boolean) ? quietRounds + 1 : 0;
      if (quietRounds >= 3) return;
      if (Date.now() > deadline) throw new Error(`the conductors were not idle within ${timeoutMs} ms`);
      await sleep(700);
    }
  }

  /** The LOCK_STALE_MS a member runs with, as its GET /locks tells. */
  async lockStaleMs(member: FleetMember): Promise<number> {
    return (await member.admin.json<{ staleMs: number }>('/locks')).staleMs;
  }

  /** A total summed over every conductor's last sample. */
  total(field: string): number {
    let sum = 0;
    for (const s of this.lastStatus.values()) sum += Number(s.totals[field] ?? 0);
    return sum;
  }
}
