import { performance } from 'node:perf_hooks';

/**
 * How many polls of key folders one lock manager runs at once, shared by all its waits (FIFO). Node runs
 * file-system calls on libuv's thread pool (`UV_THREADPOOL_SIZE`, 4 by default), one queue for the whole
 * process: a process waiting on 39 keys at once through a slow mount kept 39 polls' calls in that queue,
 * and every other call (heartbeats, claims, a holder's checks) waited behind all of them. With at most half
 * the pool's threads polling, the other half is never taken by polls: a heartbeat never waits for a poll.
 * Never more than MAX_POLLS_AT_ONCE, however big the pool: polls at once are load on the file server too.
 */
export function pollBudgetSize(threadPoolSize = libuvPoolSize()): number {
  return Math.max(1, Math.min(MAX_POLLS_AT_ONCE, Math.floor(threadPoolSize / 2)));
}

/** The threads of this process's libuv pool: `UV_THREADPOOL_SIZE`, or libuv's default of 4. */
export function libuvPoolSize(): number {
  return Number(process.env.UV_THREADPOOL_SIZE) || 4;
}

/**
 * The polls of one process at once, at most: 8 is what the GlusterFS race passed with (8 processes on two
 * clients, 7 calls in flight each; with 36–39 each, every call took about 530 ms, docs/locking.md).
 */
export const MAX_POLLS_AT_ONCE = 8;

/**
 * Turns to poll: at most `size` polls in flight, the others wait their turn in order. Only polls (the
 * looks of a wait) take a turn; claims, releases, heartbeats and a holder's checks never do.
 */
export class PollBudget {
  private running = 0;
  private readonly turns: Array<() => void> = [];

  constructor(readonly size: number = pollBudgetSize()) {
    if (!(size >= 1)) throw new RangeError(`a poll budget of at least 1 (got ${size})`);
  }

  /** Polls in flight now. */
  get inFlight(): number {
    return this.running;
  }

  /** Polls waiting for a turn now. */
  get waiting(): number {
    return this.turns.length;
  }

  /**
   * Runs `poll` in its turn; rejects with the signal's reason if it aborts before the turn comes. `ms`: how
   * long the poll itself took, from its turn on (what paces the wait's next poll, poll-pacing.ts).
   */
  async run<T>(signal: AbortSignal, poll: () => Promise<T>): Promise<{ result: T; ms: number }> {
    await this.take(signal);
    const started = performance.now();
    try {
      return { result: await poll(), ms: performance.now() - started };
    } finally {
      this.running--;
      this.turns.shift()?.();
    }
  }

  private take(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    if (this.running < this.size && this.turns.length === 0) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const turn = () => {
        signal.removeEventListener('abort', onAbort);
        this.running++;
        resolve();
      };
      const onAbort = () => {
        const index = this.turns.indexOf(turn);
        if (index >= 0) this.turns.splice(index, 1);
        reject(signal.reason as Error);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.turns.push(turn);
    });
  }
}
