import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore } from '@app/image-store';
import { type LockFileSystem, NodeLockManager, inspectLocks, nodeLockFileSystem } from '@app/locking';
import { LeftoverSweep } from './leftover-sweep';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const quiet = { info: () => undefined, warn: () => undefined, debug: () => undefined };
const KEY = { node: 'n3', imageId: 'img-3.raw' };

/** node's fs, except that making a release marker fails with ENOTCONN while armed (a mount killed). */
function markerFailing(): { fs: LockFileSystem; armed: { on: boolean } } {
  const armed = { on: false };
  return {
    armed,
    fs: {
      ...nodeLockFileSystem,
      mkdir: async (dir, options) => {
        if (armed.on && dir.endsWith('.released'))
          throw Object.assign(new Error(`ENOTCONN: socket is not connected, mkdir '${dir}'`), {
            code: 'ENOTCONN',
          });
        return nodeLockFileSystem.mkdir(dir, options);
      },
    },
  };
}

/**
 * The leftover sweep leaves the keys its own conductor holds. A reader acquisition of that conductor that
 * failed while giving the gate back (the mount went away right then) must not count as holding the key,
 * or every dead reader's entry on it (and the unreleased gate) outlives the sweep for good.
 */
describe('leftover sweep and its own conductor failed acquisitions', () => {
  let root: string;
  const managers: NodeLockManager[] = [];

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-sweep-own-'));
    await fsp.mkdir(path.join(root, KEY.node, 'locks'), { recursive: true });
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });

  it("collects a dead reader's entry on a key its conductor failed to take shared", async () => {
    const { fs, armed } = markerFailing();
    const locks = new NodeLockManager({ root, conductorId: 'h2-1', timings: FAST, fs });
    managers.push(locks);
    armed.on = true;
    await expect(locks.acquire({ ...KEY, mode: 'shared' }, { timeoutMs: 5_000 })).rejects.toThrow(/ENOTCONN/);
    armed.on = false;
    // A reader killed while holding the key: its entry stays, frozen.
    await fsp.mkdir(path.join(root, KEY.node, 'locks', KEY.imageId, 'r~h3-1~a1'));
    const store = new ImageStore({ root, fsync: false });
    const sweep = new LeftoverSweep(store.entries, locks, {
      intervalMs: 60_000,
      root,
      listNodes: async () => [KEY.node],
      log: quiet,
    });
    const left = async () =>
      (await inspectLocks(root, { staleMs: FAST.staleMs })).entries.map(
        (e) => `${e.mode} ${e.holder?.conductorId ?? '?'}`,
      );
    // Seen, quiet key folder, quiet entries: a few rounds, each after the stale time.
    for (let round = 0; round < 5 && (await left()).length > 0; round++) {
      await sweep.runOnce();
      await new Promise((r) => setTimeout(r, FAST.staleMs + 200));
    }
    expect(await left(), 'lock entries the sweep left').toEqual([]);
    expect(locks.heldLocks(), 'a lock no caller can release').toEqual([]);
  });
});
