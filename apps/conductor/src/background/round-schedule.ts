import type { LeaseTick, RoundLease } from './round-lease';

/** What the timer's ticks did under a cell-wide lease (GET /status). */
export type LeaseTicks = Record<LeaseTick, number>;

/**
 * Runs a background round every `intervalMs`, counted from the end of one round to the start of the next,
 * so rounds never overlap; runOnce() called during a round joins it. stop() (graceful shutdown) cancels the
 * timer, aborts the round through its signal and waits for it, so no round outlives the stop.
 */
export class RoundSchedule<R> {
  private timer: NodeJS.Timeout | undefined;
  private current: Promise<R> | undefined;
  private readonly stopping = new AbortController();
  private started = false;
  private nextRoundAtMs: number | undefined;
  rounds = 0;
  /** Only with a lease: how its ticks went (ran here, ran elsewhere within the interval, lease busy). */
  readonly leaseTicks: LeaseTicks | null;

  constructor(
    /** One round; must never reject (a round reports its own failures). */
    private readonly round: (signal: AbortSignal) => Promise<R>,
    readonly intervalMs: number,
    /** Timer ticks run the round only when this cell-wide lease says it is due (round-lease.ts). */
    private readonly lease?: RoundLease,
  ) {
    this.leaseTicks = lease ? { ran: 0, recent: 0, busy: 0 } : null;
  }

  get running(): boolean {
    return this.current !== undefined;
  }

  get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  /** When the timer fires next; null when not started, stopped, or while a round runs. */
  get nextRoundAt(): string | null {
    return this.timer && this.nextRoundAtMs !== undefined ? new Date(this.nextRoundAtMs).toISOString() : null;
  }

  /** Starts the timer once; false when it was already started or stopped. */
  start(): boolean {
    if (this.started || this.stopping.signal.aborted) return false;
    this.started = true;
    this.scheduleNext();
    return true;
  }

  runOnce(): Promise<R> {
    this.current ??= this.round(this.stopping.signal).finally(() => {
      this.rounds += 1;
      this.current = undefined;
    });
    return this.current;
  }

  async stop(): Promise<void> {
    this.stopping.abort(new Error('the conductor is shutting down'));
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.current;
  }

  private async tick(): Promise<void> {
    if (!this.lease) {
      await this.runOnce();
      return;
    }
    // A lease that cannot be read (CACHE_ROOT away) is a busy tick: the next one tries again.
    const outcome = await this.lease
      .tick(() => this.runOnce(), this.stopping.signal)
      .catch((): LeaseTick => 'busy');
    this.leaseTicks![outcome] += 1;
  }

  private scheduleNext(): void {
    if (this.stopping.signal.aborted) return;
    this.nextRoundAtMs = Date.now() + this.intervalMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // A round never rejects; the next one is planned only once this one is over.
      void this.tick().then(() => this.scheduleNext());
    }, this.intervalMs);
    this.timer.unref();
  }
}
