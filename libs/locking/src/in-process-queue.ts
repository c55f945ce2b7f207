/** A waiter's turn: its own (`leave` gives it to the next waiter), or a grant from the head that took it along. */
export type Turn<G> = { leave: () => void; grant?: undefined } | { leave?: undefined; grant: G };

/** A shared waiter the head took along (takeSharedFollowers): answer it once, with a grant or an error. */
export interface Follower<G, T> {
  tag: T;
  admit(grant: G): void;
  fail(error: unknown): void;
}

interface Waiter<G, T> {
  /** Set for a shared waiter: what the head needs to take it along. */
  shared?: T;
  resolve(turn: Turn<G>): void;
  reject(error: unknown): void;
  /** Stops listening to its deadline: a waiter taken along is answered by the head only. */
  detach(): void;
}

/**
 * FIFO turns per lock key inside one process: only the head waiter touches the file system, the others
 * wait here in order, so contention inside a process neither polls the shared folder nor starves anyone.
 * A head that holds a key's gate for a shared lock may take the shared waiters right behind it along
 * (takeSharedFollowers): they are answered by the head, never get a turn of their own, and the turn then
 * passes to the first waiter behind them, so the order stays first come, first served.
 */
export class InProcessQueue<G = never, T = never> {
  private readonly queues = new Map<string, Array<Waiter<G, T>>>();
  private readonly busy = new Set<string>();

  /** Waits for the key's turn (or a grant, for a shared waiter the head took along). */
  async enter(key: string, deadline: { signal: AbortSignal }, shared?: T): Promise<Turn<G>> {
    if (!this.busy.has(key)) {
      this.busy.add(key);
      return { leave: this.leaver(key) };
    }
    const waiters = this.queues.get(key) ?? [];
    this.queues.set(key, waiters);
    return new Promise<Turn<G>>((resolve, reject) => {
      const onAbort = () => {
        const index = waiters.indexOf(waiter);
        if (index >= 0) waiters.splice(index, 1);
        reject(deadline.signal.reason);
      };
      const detach = () => deadline.signal.removeEventListener('abort', onAbort);
      const settle =
        <A>(answer: (a: A) => void) =>
        (a: A) => {
          detach();
          answer(a);
        };
      const waiter: Waiter<G, T> = { shared, resolve: settle(resolve), reject: settle(reject), detach };
      if (deadline.signal.aborted) return onAbort();
      deadline.signal.addEventListener('abort', onAbort, { once: true });
      waiters.push(waiter);
    });
  }

  /**
   * Removes up to `max` shared waiters from the front of the key's queue (stopping at the first
   * exclusive one) and hands them to the caller, the head, to answer. Taken waiters no longer end by
   * their own deadline here: the head answers them promptly either way.
   */
  takeSharedFollowers(key: string, max: number): Follower<G, T>[] {
    const waiters = this.queues.get(key) ?? [];
    const taken: Follower<G, T>[] = [];
    while (taken.length < max && waiters[0]?.shared !== undefined) {
      const waiter = waiters.shift()!;
      // Its own abort would answer it before the head does, and the entry made for it would beat on.
      waiter.detach();
      taken.push({
        tag: waiter.shared!,
        admit: (grant) => waiter.resolve({ grant }),
        fail: (error) => waiter.reject(error),
      });
    }
    return taken;
  }

  waiting(key: string): number {
    return this.queues.get(key)?.length ?? 0;
  }

  private leaver(key: string): () => void {
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const next = this.queues.get(key)?.shift();
      if (next) next.resolve({ leave: this.leaver(key) });
      else {
        this.busy.delete(key);
        this.queues.delete(key);
      }
    };
  }
}
