/**
 * Callers waiting for a value that comes later (the live connection), each with a timeout of its own:
 * all are answered at once when it comes, or when waiting ends for everyone (closed).
 */
export class Waiters<T> {
  private readonly waiting = new Set<{ resolve: (value: T) => void; reject: (error: Error) => void }>();

  /** Waits for resolveAll; after `timeoutMs`, rejects with what `timedOut` says then. */
  wait(timeoutMs: number, timedOut: () => Error): Promise<T> {
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (value: T) => {
          clearTimeout(timer);
          resolve(value);
        },
        reject: (error: Error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const timer = setTimeout(() => {
        this.waiting.delete(waiter);
        reject(timedOut());
      }, timeoutMs);
      this.waiting.add(waiter);
    });
  }

  get size(): number {
    return this.waiting.size;
  }

  resolveAll(value: T): void {
    for (const waiter of [...this.waiting]) waiter.resolve(value);
    this.waiting.clear();
  }

  rejectAll(error: Error): void {
    for (const waiter of [...this.waiting]) waiter.reject(error);
    this.waiting.clear();
  }
}
