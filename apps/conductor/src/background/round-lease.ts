import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { type HeldLock, NodeLockManager, type NodeLockManagerOptions, readLockActivity } from '@app/locking';
import { makeCellFolder } from '@app/image-store';

/**
 * Where the cell's round leases live: `<CACHE_ROOT>/.rounds/cell/locks/<round>/`, the same lock protocol
 * as a node's locks, in a folder no node id can name (node ids never start with a dot).
 */
export const ROUND_LEASE_FOLDER = '.rounds';
const LEASE_NODE = 'cell';

/**
 * The leases' locks, below `<CACHE_ROOT>/.rounds/cell/`, which must exist (prepareRoundLeases): a dead
 * network mount leaves an empty local mount point, and a lease made there is seen by no other host (the
 * across-hosts campaign found a conductor on a killed sshfs mount holding the sweep's lease beside the real
 * holder). Without the folder a tick is 'busy' and no round runs.
 */
export function roundLeaseLocks(options: NodeLockManagerOptions): NodeLockManager {
  return new NodeLockManager({
    ...options,
    root: path.join(options.root, ROUND_LEASE_FOLDER),
    requireNodeFolder: true,
  });
}

/** Makes the leases' folder; once at start, after the start-up check found CACHE_ROOT to be the cell's. */
export async function prepareRoundLeases(cacheRoot: string): Promise<void> {
  await makeCellFolder(cacheRoot, path.join(cacheRoot, ROUND_LEASE_FOLDER, LEASE_NODE));
}

/** The lease of round `name` in the cell of `locks` (a conductor's node locks: same root, id, timings). */
export function roundLease(locks: NodeLockManager, name: string, intervalMs: number): RoundLease {
  const leaseLocks = roundLeaseLocks({
    root: locks.root,
    conductorId: locks.conductorId,
    timings: locks.timings,
  });
  return new RoundLease(leaseLocks, name, intervalMs);
}

export type LeaseTick = 'ran' | 'recent' | 'busy';

/**
 * One cell-wide background round (the leftover sweep, the cache cleaner) every interval, whatever the
 * number of conductors: the round runs under the exclusive lock of its lease key, and a conductor runs it
 * only when the key's newest generation stayed the same for a whole interval of its own watching (its
 * monotonic clock), i.e. nobody ran the round meanwhile. Several conductors that decide so at once race
 * for the next generation with mkdir: one wins; a winner whose generation is not the one after what it
 * watched finds that another ran the round in between, and gives the lease back without running it.
 *
 * No node is left unswept when a conductor dies: a dead runner's generation stays unreleased; after an
 * interval unchanged every live conductor tries the lease, the lock takes the dead one's gate over after
 * LOCK_STALE_MS of watching it frozen, and the round runs again. While one conductor lives, rounds run.
 */
export class RoundLease {
  private seen: { generation: number | undefined; exclusive: boolean; sinceMono: number } | undefined;

  constructor(
    private readonly locks: NodeLockManager,
    readonly name: string,
    private readonly intervalMs: number,
    private readonly monotonic: () => number = () => performance.now(),
  ) {}

  /** One tick of the schedule: runs `round` under the lease when it is due here. */
  async tick(round: () => Promise<unknown>, signal?: AbortSignal): Promise<LeaseTick> {
    const key = { node: LEASE_NODE, imageId: this.name };
    const now = this.monotonic();
    const { generation, exclusive } = await readLockActivity(this.locks.root, key);
    const seen = this.seen;
    const changed = !seen || seen.generation !== generation || seen.exclusive !== exclusive;
    if (changed) this.seen = { generation, exclusive, sinceMono: now };
    // Never run before: due at once. Otherwise due once unchanged for a whole interval.
    // Timers fire on the event loop's cached clock, up to a few ms before a full interval on this one:
    // a little slack, or a lone conductor would run every other tick.
    const due = now - (seen?.sinceMono ?? now) >= this.intervalMs - Math.min(1_000, this.intervalMs / 10);
    if (generation !== undefined && (changed || !due)) return 'recent';
    let lease: HeldLock;
    try {
      lease = await this.locks.acquire(
        { ...key, mode: 'exclusive' },
        // A dead runner's gate is taken over only after the lock's own watching (LOCK_STALE_MS).
        { timeoutMs: exclusive ? this.locks.timings.staleMs * 2 + 1_000 : 1_000, signal },
      );
    } catch {
      return 'busy';
    }
    try {
      if (generation !== undefined && lease.fencingToken !== generation + 1) return 'busy';
      await round();
      return 'ran';
    } finally {
      await lease.release().catch(() => undefined);
      this.seen = { generation: lease.fencingToken, exclusive: false, sinceMono: this.monotonic() };
    }
  }
}
