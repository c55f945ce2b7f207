import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HeldLock } from './held-lock';
import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';
import { NodeLockManager } from './node-lock-manager';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const KEY = { node: 'n1', imageId: 'img', mode: 'exclusive' as const };

/**
 * A claimant that is descheduled right after it listed the key folder: the listing it acts on is then
 * older than the other claimant's mkdir. The seam holds the result of one readdir of the key folder until
 * the test lets it go, and counts the later ones.
 */
class StalledListing implements LockFileSystem {
  private armed = true;
  private release!: () => void;
  private readonly released = new Promise<void>((r) => (this.release = r));
  private listed!: () => void;
  readonly listedOnce = new Promise<void>((r) => (this.listed = r));
  listingsAfterRelease = 0;
  private afterRelease = false;
  private waiters: Array<() => void> = [];

  constructor(private readonly keyDir: string) {}

  async readdir(dir: string): Promise<string[]> {
    const names = await nodeLockFileSystem.readdir(dir);
    if (dir !== this.keyDir) return names;
    if (this.armed) {
      this.armed = false;
      this.listed();
      await this.released;
      return names;
    }
    if (this.afterRelease) {
      this.listingsAfterRelease++;
      for (const wake of this.waiters.splice(0)) wake();
    }
    return names;
  }

  go(): void {
    this.afterRelease = true;
    this.release();
  }

  /** Resolves once the stalled claimant has listed the folder `n` more times after its stale listing. */
  async listingsAfter(n: number): Promise<void> {
    while (this.listingsAfterRelease < n) await new Promise<void>((r) => this.waiters.push(r));
  }

  mkdir = nodeLockFileSystem.mkdir;
  stat = nodeLockFileSystem.stat;
  rm = nodeLockFileSystem.rm;
}

describe('claims acting on a stale listing (deterministic interleavings)', () => {
  let root: string;
  let keyDir: string;
  const managers: NodeLockManager[] = [];

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-claims-'));
    keyDir = path.join(root, 'n1', 'locks', 'img');
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });

  const manager = (conductorId: string, fs?: LockFileSystem) => {
    const m = new NodeLockManager({ root, conductorId, timings: FAST, fs });
    managers.push(m);
    return m;
  };

  /**
   * A lists the key folder and stalls; B claims and holds; A goes on from its old listing. A must not get
   * the lock while B holds it, and gets it once B releases, with a larger fencing token.
   */
  async function staleClaimantWaits(prepare: () => Promise<void>): Promise<void> {
    await prepare();
    const stalled = new StalledListing(keyDir);
    const a = manager('a', stalled);
    const b = manager('b');
    let aLock: HeldLock | undefined;
    const aAcquire = a.acquire(KEY, { timeoutMs: 30_000 }).then((lock) => (aLock = lock));
    await stalled.listedOnce;
    const bLock = await b.acquire(KEY, { timeoutMs: 5_000 });
    stalled.go();
    // Either A wrongly got the lock from its stale listing, or it saw B's claim and is waiting (polling).
    await Promise.race([aAcquire, stalled.listingsAfter(3)]);
    expect(aLock, 'the stalled claimant got the lock while another holder had it').toBeUndefined();
    expect(await bLock.isStillHeld()).toBe(true);
    await bLock.release();
    await aAcquire;
    expect(aLock!.fencingToken).toBeGreaterThan(bLock.fencingToken);
    expect(await aLock!.isStillHeld()).toBe(true);
  }

  it('first use of a key: a claimant listing the missing folder before another claims it does not win too', async () => {
    await staleClaimantWaits(async () => undefined);
  });

  it('a key folder that exists but is empty (created, never claimed)', async () => {
    await staleClaimantWaits(() => fsp.mkdir(keyDir, { recursive: true }).then(() => undefined));
  });

  it('a key folder removed by hand after use', async () => {
    await staleClaimantWaits(async () => {
      const first = await manager('c').acquire(KEY, { timeoutMs: 5_000 });
      await first.release();
      await fsp.rm(keyDir, { recursive: true, force: true });
    });
  });

  it('a claimant whose listing predates a hand removal cannot win in the re-created folder', async () => {
    const early = await manager('c').acquire(KEY, { timeoutMs: 5_000 });
    await early.release();
    const stalled = new StalledListing(keyDir);
    const a = manager('a', stalled);
    let aLock: HeldLock | undefined;
    const aAcquire = a.acquire(KEY, { timeoutMs: 30_000 }).then((lock) => (aLock = lock));
    await stalled.listedOnce; // A saw the old generation released: it will claim the next number
    await fsp.rm(keyDir, { recursive: true, force: true });
    const bLock = await manager('b').acquire(KEY, { timeoutMs: 5_000 });
    expect(bLock.fencingToken, 'fencing tokens grow across a hand-removed key folder').toBeGreaterThan(
      early.fencingToken,
    );
    stalled.go();
    await Promise.race([aAcquire, stalled.listingsAfter(3)]);
    expect(aLock, 'the claimant acting on a listing of the removed folder got the lock').toBeUndefined();
    await bLock.release();
    await aAcquire;
    expect(aLock!.fencingToken).toBeGreaterThan(bLock.fencingToken);
  });
});
