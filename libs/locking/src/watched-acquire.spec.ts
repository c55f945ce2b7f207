import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NodeLockManager } from './node-lock-manager';
import { StalenessObserver } from './staleness-observer';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const KEY = { node: 'src', imageId: 'img' };

/**
 * The leftover sweep watches a key's entries frozen for LOCK_STALE_MS before it takes the key; the lock
 * then uses that watching (AcquireOptions.observer) instead of watching the dead entries again for as long.
 */
describe("an acquisition with the caller's watching", () => {
  let root: string;
  let keyDir: string;
  const managers: NodeLockManager[] = [];
  const manager = (conductorId: string) => {
    const m = new NodeLockManager({ root, conductorId, timings: FAST });
    managers.push(m);
    return m;
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-watched-'));
    keyDir = path.join(root, KEY.node, 'locks', KEY.imageId);
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('drains a reader entry the caller watched frozen for the stale time without watching it again', async () => {
    // A dead reader: its entry is there, frozen (a reader killed while holding the key).
    await (await manager('first').acquire({ ...KEY, mode: 'shared' }, { timeoutMs: 5_000 })).release();
    const dead = path.join(keyDir, 'r~dead~a1');
    await fsp.mkdir(dead);
    const observer = new StalenessObserver(FAST.staleMs);
    await observer.isStale(dead);
    await sleep(FAST.staleMs + 100);
    expect(await observer.isStale(dead)).toBe(true);
    // Well within one stale time: only the caller's watching can make it.
    const writer = await manager('w').acquire(
      { ...KEY, mode: 'exclusive' },
      { timeoutMs: FAST.staleMs / 4, observer },
    );
    expect(await writer.isStillHeld()).toBe(true);
    expect(await fsp.readdir(keyDir)).not.toContain('r~dead~a1');
  });

  it('refuses watching of less than the stale time', async () => {
    const short = new StalenessObserver(FAST.staleMs - 1);
    await expect(
      manager('w').acquire({ ...KEY, mode: 'exclusive' }, { timeoutMs: 1_000, observer: short }),
    ).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
  });
});
