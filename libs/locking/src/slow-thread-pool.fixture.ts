import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';

/**
 * libuv's thread pool in front of a slow mount: every file-system call of a process waits in one FIFO
 * queue for one of `threads` threads, then takes `callMs` (a FUSE round trip), then runs on the local
 * folder. `fs` is the lock manager's seam through the pool; `probe()` is any other call of the same
 * process through the same pool (a heartbeat's utimes, which proper-lockfile makes outside the seam) and
 * tells how many calls were queued ahead of it. `maxQueued` counts, while `watching`, the most calls ever
 * waiting for or holding a thread at once.
 */
export class SlowThreadPool {
  private busy = 0;
  private readonly queue: Array<() => void> = [];
  watching = false;
  maxQueued = 0;

  constructor(
    private readonly threads: number,
    private readonly callMs: number,
  ) {}

  readonly fs: LockFileSystem = {
    readdir: (dir) => this.call(() => nodeLockFileSystem.readdir(dir)),
    mkdir: (dir, options) => this.call(() => nodeLockFileSystem.mkdir(dir, options)),
    stat: (target) => this.call(() => nodeLockFileSystem.stat(target)),
    rm: (target, options) => this.call(() => nodeLockFileSystem.rm(target, options)),
    rmdir: (target) => this.call(() => nodeLockFileSystem.rmdir!(target)),
    rename: (from, to) => this.call(() => nodeLockFileSystem.rename(from, to)),
  };

  /** A call from outside the seam: resolves with how many calls were waiting for a thread before it. */
  async probe(): Promise<number> {
    const ahead = this.queue.length;
    await this.call(async () => undefined);
    return ahead;
  }

  private async call<T>(work: () => Promise<T>): Promise<T> {
    if (this.watching) this.maxQueued = Math.max(this.maxQueued, this.busy + this.queue.length + 1);
    if (this.busy >= this.threads) await new Promise<void>((r) => this.queue.push(r));
    else this.busy++;
    try {
      await new Promise((r) => setTimeout(r, this.callMs));
      return await work();
    } finally {
      const next = this.queue.shift();
      if (next)
        next(); // the thread goes to the next call at once
      else this.busy--;
    }
  }
}
