/**
 * FIFO turns per lock key inside one process: only the head waiter touches the file system, the others
 * wait here in order, so contention inside a process neither polls the shared folder nor starves anyone.
 */
export class InProcessQueue {
  private readonly queues = new Map<string, Array<{ resolve: () => void }>>();
  private readonly busy = new Set<string>();

  /** Waits for the key's turn; the returned function gives the turn to the next waiter (call it once). */
  async enter(key: string, deadline: { signal: AbortSignal }): Promise<() => void> {
    if (!this.busy.has(key)) {
      this.busy.add(key);
      return this.leaver(key);
    }
    const waiters = this.queues.get(key) ?? [];
    this.queues.set(key, waiters);
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        resolve: () => {
          deadline.signal.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const index = waiters.indexOf(waiter);
        if (index >= 0) waiters.splice(index, 1);
        reject(deadline.signal.reason);
      };
      if (deadline.signal.aborted) return onAbort();
      deadline.signal.addEventListener('abort', onAbort, { once: true });
      waiters.push(waiter);
    });
    return this.leaver(key);
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
      if (next) next.resolve();
      else {
        this.busy.delete(key);
        this.queues.delete(key);
      }
    };
  }
}
