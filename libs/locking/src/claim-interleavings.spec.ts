import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HeldLock } from './held-lock';
import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';
import { NodeLockManager } from './node-lock-manager';
import { StalledListing } from './stalled-listing.fixture';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const KEY = { node: 'n1', imageId: 'img', mode: 'exclusive' as const };

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

  it('a claimant paused between its mkdir and its heartbeat does not hold beside the one that took it over', async () => {
    // A: stalls right after its mkdir of a generation. B: sees that generation without a holder entry,
    // watches it frozen for the stale time, and stalls right before its own mkdir. A then resumes and
    // re-checks before B's mkdir lands: its heartbeat must count from before its mkdir, not from the
    // resumption, or A holds with a "fresh" heartbeat that B's takeover never saw.
    const gates = { aMkdir: new Gate(), bMkdir: new Gate() };
    let aGeneration: string | undefined;
    let aResumed = false;
    let aListingsAfter = 0;
    const aFs: LockFileSystem = {
      ...nodeLockFileSystem,
      async readdir(dir) {
        if (aResumed && dir === keyDir) aListingsAfter++;
        return nodeLockFileSystem.readdir(dir);
      },
      async mkdir(dir, options) {
        const made = await nodeLockFileSystem.mkdir(dir, options);
        if (aGeneration === undefined && /\/g-\d+$/.test(dir)) {
          aGeneration = path.basename(dir);
          await gates.aMkdir.stall();
        }
        return made;
      },
    };
    const bFs: LockFileSystem = {
      ...nodeLockFileSystem,
      async mkdir(dir, options) {
        if (/\/g-\d+$/.test(dir) && path.basename(dir) !== aGeneration) await gates.bMkdir.stall();
        return nodeLockFileSystem.mkdir(dir, options);
      },
    };
    let aLock: HeldLock | undefined;
    const aAcquire = manager('a', aFs)
      .acquire(KEY, { timeoutMs: 30_000 })
      .then((lock) => (aLock = lock));
    await gates.aMkdir.reached;
    let bLock: HeldLock | undefined;
    const bAcquire = manager('b', bFs)
      .acquire(KEY, { timeoutMs: 30_000 })
      .then((lock) => (bLock = lock));
    await gates.bMkdir.reached; // B judged A's generation stale and is about to claim the next one
    aResumed = true;
    gates.aMkdir.go();
    // A either got the lock (wrongly: B is about to take it) or gave its claim up and looks again (its
    // re-check is one listing, a new look the second).
    await Promise.race([aAcquire, waitUntil(async () => aListingsAfter >= 2)]);
    expect(aLock, 'the resumed claimant got the lock while a takeover of it was under way').toBeUndefined();
    gates.bMkdir.go();
    await bAcquire;
    expect(await bLock!.isStillHeld()).toBe(true);
    expect(aLock).toBeUndefined();
    await bLock!.release();
    await aAcquire;
    expect(aLock!.fencingToken).toBeGreaterThan(bLock!.fencingToken);
  });
});

/** A point where one step of one claimant waits until the test lets it go on. */
class Gate {
  private open!: () => void;
  private readonly opened = new Promise<void>((r) => (this.open = r));
  private arrived!: () => void;
  readonly reached = new Promise<void>((r) => (this.arrived = r));

  stall(): Promise<void> {
    this.arrived();
    return this.opened;
  }

  go(): void {
    this.open();
  }
}

async function waitUntil(condition: () => Promise<boolean>): Promise<void> {
  while (!(await condition())) await new Promise((r) => setTimeout(r, 10));
}
