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

  constructor(
    /** One round; must never reject (a round reports its own failures). */
    private readonly round: (signal: AbortSignal) => Promise<R>,
    readonly intervalMs: number,
  ) {}

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

  private scheduleNext(): void {
    if (this.stopping.signal.aborted) return;
    this.nextRoundAtMs = Date.now() + this.intervalMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // A round never rejects; the next one is planned only once this one is over.
      void this.runOnce().then(() => this.scheduleNext());
    }, this.intervalMs);
    this.timer.unref();
  }
}
