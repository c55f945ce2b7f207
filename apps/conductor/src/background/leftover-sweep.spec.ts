import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ImageStore } from '@app/image-store';
import { type LockFileSystem, NodeLockManager, StalenessObserver, nodeLockFileSystem } from '@app/locking';
import { LeftoverSweep } from './leftover-sweep';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const NODES = ['n0', 'n1', 'n2'];
const IMAGES = ['a', 'b', 'c', 'd'];
const quiet = { info: () => undefined, warn: () => undefined, debug: () => undefined };

/** Counts every call the sweep makes through its file-system seams. */
function counting(): { fs: LockFileSystem; calls: string[] } {
  const calls: string[] = [];
  const wrap =
    <A extends unknown[], R>(name: string, fn: (...args: A) => Promise<R>) =>
    (...args: A) => {
      calls.push(`${name} ${String(args[0])}`);
      return fn(...args);
    };
  return {
    calls,
    fs: {
      readdir: wrap('readdir', nodeLockFileSystem.readdir),
      mkdir: wrap('mkdir', nodeLockFileSystem.mkdir),
      stat: wrap('stat', nodeLockFileSystem.stat),
      rm: wrap('rm', nodeLockFileSystem.rm),
      rename: wrap('rename', nodeLockFileSystem.rename),
    },
  };
}

describe('leftover sweep on a cell with lock history', () => {
  let root: string;
  let locks: NodeLockManager;

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-sweep-'));
    locks = new NodeLockManager({ root, conductorId: 'sweeper', timings: FAST });
    const user = new NodeLockManager({ root, conductorId: 'user', timings: FAST });
    const hourAgo = (Date.now() - 3_600_000) / 1000;
    for (const node of NODES)
      for (const imageId of IMAGES) {
        // Each key first used an hour ago, then once more and released: history, nothing held.
        const epoch = path.join(root, node, 'locks', imageId, 'epoch');
        await fsp.mkdir(epoch, { recursive: true });
        await fsp.utimes(epoch, hourAgo, hourAgo);
        await (await user.acquire({ node, imageId, mode: 'exclusive' }, { timeoutMs: 5_000 })).release();
      }
  });
  afterEach(async () => {
    await locks.releaseAll();
    await fsp.rm(root, { recursive: true, force: true });
  });

  it("removes a dead copy's record of its pieces, and leaves a live copy's", async () => {
    const store = new ImageStore({ root, fsync: false });
    const sweep = new LeftoverSweep(store.entries, locks, {
      intervalMs: 60_000,
      root,
      listNodes: async () => NODES,
      log: quiet,
    });
    const folder = path.join(root, '.icc-swarms', 'img');
    await fsp.mkdir(folder, { recursive: true });
    const dead = path.join(folder, 'n1~attempt-dead.json');
    const live = path.join(folder, 'n2~attempt-live.json');
    await fsp.writeFile(dead, '{}');
    await fsp.writeFile(live, '{}');
    const minuteAgo = (Date.now() - 60_000) / 1000;
    await fsp.utimes(dead, minuteAgo, minuteAgo);
    const round = await sweep.runOnce();
    expect(round.swarmRecords).toBe(1);
    expect(await fsp.readdir(folder)).toEqual(['n2~attempt-live.json']);
    expect(sweep.view().totals.swarmRecords).toBe(1);
    // Once the live one's copy died too, its folder goes with it.
    await fsp.utimes(live, minuteAgo, minuteAgo);
    await sweep.runOnce();
    expect(await fsp.readdir(path.join(root, '.icc-swarms'))).toEqual([]);
  });

  it('retires at most maxRetiredPerRound idle key folders a round, the rest in the next rounds', async () => {
    const store = new ImageStore({ root, fsync: false });
    const sweep = new LeftoverSweep(store.entries, locks, {
      intervalMs: 60_000,
      root,
      listNodes: async () => NODES,
      log: quiet,
      maxRetiredPerRound: 5,
    });
    await sweep.runOnce();
    await new Promise((r) => setTimeout(r, FAST.staleMs + 200));
    expect((await sweep.runOnce()).keysRetired).toBe(5);
    expect((await sweep.runOnce()).keysRetired).toBe(5);
    expect((await sweep.runOnce()).keysRetired).toBe(NODES.length * IMAGES.length - 10);
  });

  it('hands its own watching to the lock, so no dead gate or reader is watched a second stale time', async () => {
    const retireKey = vi.spyOn(locks, 'retireKey');
    const sweep = new LeftoverSweep(new ImageStore({ root, fsync: false }).entries, locks, {
      intervalMs: 60_000,
      root,
      listNodes: async () => NODES,
      log: quiet,
    });
    await sweep.runOnce();
    await new Promise((r) => setTimeout(r, FAST.staleMs + 200));
    await sweep.runOnce();
    expect(retireKey).toHaveBeenCalled();
    for (const [, options] of retireKey.mock.calls)
      expect(options.observer, 'an acquisition watching from scratch').toBeInstanceOf(StalenessObserver);
  });

  it('retires idle key folders, keeps one in use, and then costs two listings per node a round', async () => {
    const store = new ImageStore({ root, fsync: false });
    const seams = counting();
    const storeCalls: string[] = [];
    const entries = {
      listTmp: (node: string) => (storeCalls.push(`listTmp ${node}`), store.entries.listTmp(node)),
      removeLeftoverTmp: store.entries.removeLeftoverTmp.bind(store.entries),
      resumablePartials: (node: string) => (
        storeCalls.push(`resumablePartials ${node}`),
        store.entries.resumablePartials(node)
      ),
      collectStaleSwarmRecords: () => (
        storeCalls.push('collectStaleSwarmRecords'),
        store.entries.collectStaleSwarmRecords()
      ),
    };
    const sweep = new LeftoverSweep(entries, locks, {
      intervalMs: 60_000,
      root,
      listNodes: async () => NODES,
      log: quiet,
      resumableKeepMs: 60_000,
      fs: seams.fs,
    });
    const reader = new NodeLockManager({ root, conductorId: 'reader', timings: FAST });
    const inUse = await reader.acquire({ node: 'n1', imageId: 'b', mode: 'shared' }, { timeoutMs: 5_000 });
    try {
      await sweep.runOnce(); // first sighting of every key folder
      await new Promise((r) => setTimeout(r, FAST.staleMs + 200));
      const second = await sweep.runOnce();
      expect(second.keysRetired).toBe(NODES.length * IMAGES.length - 1);
      expect(await inUse.isStillHeld(), 'the reader kept its lock').toBe(true);
      for (const node of NODES)
        expect((await fsp.readdir(path.join(root, node, 'locks'))).sort()).toEqual(
          node === 'n1' ? ['b'] : [],
        );
    } finally {
      await inUse.release();
      await reader.releaseAll();
    }
    // The reader left: its key is retired as soon as it stayed quiet for the stale time.
    await sweep.runOnce();
    await new Promise((r) => setTimeout(r, FAST.staleMs + 200));
    expect((await sweep.runOnce()).keysRetired).toBe(1);
    seams.calls.length = 0;
    storeCalls.length = 0;
    const idle = await sweep.runOnce();
    expect(idle.nodes).toBe(NODES.length);
    expect(
      [...seams.calls, ...storeCalls].length,
      [...seams.calls, ...storeCalls].join('\n'),
    ).toBeLessThanOrEqual(2 * NODES.length + 1); // + the listing of .icc-swarms/
    // The round counts its own calls (GET /status, /metrics): these, and the listing of the nodes.
    expect(idle.fsOps).toBe(seams.calls.length + storeCalls.length + 1);
    expect(sweep.view().lastRound?.fsOps).toBe(idle.fsOps);
  });
});
