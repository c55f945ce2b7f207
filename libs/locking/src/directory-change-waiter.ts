import * as fs from 'node:fs';

/**
 * Wakes a waiter as soon as a lock folder changes (inotify locally), so a released lock is handed over
 * in milliseconds instead of at the next poll. Watches do not see other NFS clients' changes, so every
 * wait is also bounded by a poll interval; a watch that cannot be set up just leaves polling.
 */
export class DirectoryChangeWaiter {
  private watcher?: fs.FSWatcher;
  private changed = false;
  private wake?: () => void;

  /** `watch` false: polls only (a network mount: lock-file-system.ts, StepFileSystem.watchable). */
  constructor(dir: string, watch = true) {
    if (!watch) return;
    try {
      this.watcher = fs.watch(dir, { persistent: false }, () => this.onChange());
      this.watcher.on('error', () => this.close());
    } catch {
      this.watcher = undefined;
    }
  }

  get watching(): boolean {
    return this.watcher !== undefined;
  }

  /** Resolves at the first change since the last call, after `ms`, or when `signal` aborts. */
  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.changed || signal?.aborted) {
      this.changed = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.wake = undefined;
        this.changed = false;
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      signal?.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.wake?.();
  }

  private onChange(): void {
    this.changed = true;
    this.wake?.();
  }
}
