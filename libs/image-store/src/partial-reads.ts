/**
 * This process's reads of other copies' partial files (reading from copies in progress, swarm-holders.ts),
 * by path. A partial is removed only once no read of it in this process is open: sshfs and NFS keep a
 * file unlinked while their own client has it open under a hidden name (`.fuse_hidden*`, `.nfs*`), litter
 * in the cache. A reader opens the partial for one piece at a time, so a removal waits a piece at most;
 * readers in other processes on the same mount are not seen here (docs/copies.md says what that leaves).
 */
export class PartialReads {
  private readonly open = new Map<string, number>();
  private readonly waiters = new Map<string, Array<() => void>>();

  /** Runs `use` counted as a read of `file`. */
  async track<T>(file: string, use: () => Promise<T>): Promise<T> {
    this.open.set(file, (this.open.get(file) ?? 0) + 1);
    try {
      return await use();
    } finally {
      const left = this.open.get(file)! - 1;
      if (left > 0) this.open.set(file, left);
      else {
        this.open.delete(file);
        const woken = this.waiters.get(file) ?? [];
        this.waiters.delete(file);
        for (const wake of woken) wake();
      }
    }
  }

  /** Resolves once no read of `file` is open here, or after `maxMs` (a stuck read must not stop a removal). */
  async idle(file: string, maxMs: number): Promise<void> {
    if (!this.open.has(file)) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, maxMs);
      timer.unref();
      const list = this.waiters.get(file) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve();
      });
      this.waiters.set(file, list);
    });
  }

  /** How many reads of `file` are open here (specs). */
  count(file: string): number {
    return this.open.get(file) ?? 0;
  }
}
