import { sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import { type LockFileSystem, isGone, nodeLockFileSystem } from './lock-file-system';

/**
 * Decides staleness by watching a heartbeat's mtime *change*, timed on the observer's own monotonic
 * clock, never by comparing the mtime with the local wall clock. Clock skew between NFS clients (an mtime
 * in the future, or hours in the past) therefore can neither keep a dead lock alive for ever nor make a
 * live one look stale. The price: a lock left by a dead process is taken over only after an observer has
 * watched it for staleMs.
 */
export class StalenessObserver {
  private readonly seen = new Map<string, { signature: string; since: number }>();

  constructor(
    readonly staleMs: number,
    private readonly fs: LockFileSystem = nodeLockFileSystem,
  ) {}

  /** True when `path` has kept the same identity and mtime for at least staleMs of observation. */
  async isStale(path: string): Promise<boolean> {
    const issuedAt = performance.now();
    const signature = await readSignature(this.fs, path);
    if (signature === undefined) {
      this.seen.delete(path);
      return false; // gone: the caller re-reads the folder
    }
    const previous = this.seen.get(path);
    if (!previous || previous.signature !== signature) {
      this.seen.set(path, { signature, since: performance.now() });
      return false;
    }
    return issuedAt - previous.since >= this.staleMs;
  }

  /** How long until `path` could be judged stale, for scheduling the next look. */
  remainingMs(path: string): number {
    const previous = this.seen.get(path);
    if (!previous) return this.staleMs;
    return Math.max(0, this.staleMs - (performance.now() - previous.since));
  }

  forget(path: string): void {
    this.seen.delete(path);
  }

  /** Forgets every path below `dir` (a key folder a lock acquisition looked into on the caller's behalf). */
  forgetBelow(dir: string): void {
    const prefix = dir.endsWith(sep) ? dir : dir + sep;
    for (const path of this.seen.keys()) if (path.startsWith(prefix)) this.seen.delete(path);
  }
}

async function readSignature(fs: LockFileSystem, path: string): Promise<string | undefined> {
  try {
    const stat = await fs.stat(path);
    return `${stat.ino}:${stat.mtimeNs}`;
  } catch (error) {
    if (isGone(error)) return undefined;
    throw error;
  }
}
