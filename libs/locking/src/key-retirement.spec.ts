import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HeldLock } from './held-lock';
import { makeEpoch } from './key-folder.fixture';
import { NodeLockManager } from './node-lock-manager';
import { StalledListing } from './stalled-listing.fixture';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const KEY = { node: 'n1', imageId: 'img' };
const EXCLUSIVE = { ...KEY, mode: 'exclusive' as const };
const HOUR_US = 3_600_000_000;

describe('retiring a key folder', () => {
  let root: string;
  let keyDir: string;
  const managers: NodeLockManager[] = [];

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-retire-'));
    keyDir = path.join(root, 'n1', 'locks', 'img');
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });

  const manager = (conductorId: string, fs?: StalledListing) => {
    const m = new NodeLockManager({ root, conductorId, timings: FAST, fs });
    managers.push(m);
    return m;
  };

  it('removes an idle key folder at once, leaves nothing, and the next life has larger tokens', async () => {
    await makeEpoch(keyDir, Date.now() * 1000 - HOUR_US); // a key first used an hour ago
    const used = await manager('a').acquire(EXCLUSIVE, { timeoutMs: 5_000 });
    await used.release();
    expect(await manager('r').retireKey(KEY, { timeoutMs: 5_000 })).toBe('retired');
    expect(await fsp.readdir(path.dirname(keyDir))).toEqual([]);
    const next = await manager('b').acquire(EXCLUSIVE, { timeoutMs: 5_000 });
    expect(next.fencingToken).toBeGreaterThan(used.fencingToken + 1);
    await next.release();
  });

  it('keeps the folder when the holder says so, and releases the lock', async () => {
    await makeEpoch(keyDir, Date.now() * 1000 - HOUR_US);
    expect(await manager('r').retireKey(KEY, { timeoutMs: 5_000, underLock: async () => false })).toBe(
      'kept',
    );
    const next = await manager('b').acquire(EXCLUSIVE, { timeoutMs: 1_000 });
    await next.release();
    expect(await fsp.readdir(keyDir)).toContain('epoch');
  });

  it('keeps a key whose generations are not safely below the file system clock (the floor rule)', async () => {
    const fresh = await manager('a').acquire(EXCLUSIVE, { timeoutMs: 5_000 }); // floor = now
    await fresh.release();
    expect(await manager('r').retireKey(KEY, { timeoutMs: 5_000 })).toBe('too-young');
    const next = await manager('b').acquire(EXCLUSIVE, { timeoutMs: 1_000 });
    expect(next.fencingToken).toBeGreaterThan(fresh.fencingToken);
    await next.release();
  });

  it("judges the floor rule by the file system's clock, not by a heartbeat its holder's clock stamped", async () => {
    const fresh = await manager('a').acquire(EXCLUSIVE, { timeoutMs: 5_000 }); // floor = now
    await fresh.release();
    // proper-lockfile stamps a heartbeat's mtime from its process's Date (utimes): a conductor whose clock
    // runs 2 minutes ahead would make a fresh key look a minute older than the margin.
    const ahead = (Date.now() + 120_000) / 1000;
    const outcome = await manager('r').retireKey(KEY, {
      timeoutMs: 5_000,
      underLock: async (lock) => {
        await fsp.utimes(lock.heartbeatPath, ahead, ahead);
        return true;
      },
    });
    expect(outcome).toBe('too-young');
    expect(await fsp.readdir(keyDir)).toContain('epoch');
    // The key's next claim is still above everything the kept life made, and no probe is left behind.
    const next = await manager('b').acquire(EXCLUSIVE, { timeoutMs: 5_000 });
    expect(next.fencingToken).toBeGreaterThan(fresh.fencingToken);
    await next.release();
    expect((await fsp.readdir(keyDir)).filter((name) => name.startsWith('c~'))).toEqual([]);
  });

  it('a claimant whose listing predates a retirement never holds beside the claimant of the next life', async () => {
    // The key's floor lies an hour ahead of the file system's clock (a clock stepped back): a new life
    // would start below the old generations. A lists the folder (the newest generation released: it will
    // claim the next number) and stalls; R tries to retire the key; C then takes the lock; A goes on.
    await makeEpoch(keyDir, Date.now() * 1000 + HOUR_US);
    const early = await manager('e').acquire(EXCLUSIVE, { timeoutMs: 5_000 });
    await early.release();
    const stalled = new StalledListing(keyDir);
    let aLock: HeldLock | undefined;
    const aAcquire = manager('a', stalled)
      .acquire(EXCLUSIVE, { timeoutMs: 30_000 })
      .then((lock) => (aLock = lock));
    await stalled.listedOnce;
    await manager('r').retireKey(KEY, { timeoutMs: 5_000 });
    const cLock = await manager('c').acquire(EXCLUSIVE, { timeoutMs: 5_000 });
    stalled.go();
    await Promise.race([aAcquire, stalled.listingsAfter(3)]);
    expect(aLock, 'the claimant acting on a listing of the retired folder got the lock').toBeUndefined();
    expect(await cLock.isStillHeld()).toBe(true);
    await cLock.release();
    await aAcquire;
    expect(aLock!.fencingToken).toBeGreaterThan(cLock.fencingToken);
  });
});
