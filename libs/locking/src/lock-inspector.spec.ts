import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidFieldError } from '@app/contracts';
import { makeEpoch } from './key-folder.fixture';
import { inspectLocks, readLockActivity } from './lock-inspector';
import { NodeLockManager } from './node-lock-manager';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };

describe('inspectLocks (real lock folders)', () => {
  let root: string;
  let outside: string;
  const managers: NodeLockManager[] = [];
  const manager = (conductorId: string) => {
    const m = new NodeLockManager({ root, conductorId, timings: FAST });
    managers.push(m);
    return m;
  };

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-inspect-'));
    outside = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-inspect-outside-'));
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
    await fsp.rm(outside, { recursive: true, force: true });
  });

  it('shows exclusive holders with their generation and shared readers, not released locks', async () => {
    const writer = await manager('c1').acquire(
      { node: 'node-b', imageId: 'img.qcow2', mode: 'exclusive' },
      { timeoutMs: 1000, attemptId: 'w1' },
    );
    await manager('c1').acquire(
      { node: 'node-a', imageId: 'img.qcow2', mode: 'shared' },
      { timeoutMs: 1000, attemptId: 'r1' },
    );
    await manager('c2').acquire(
      { node: 'node-a', imageId: 'img.qcow2', mode: 'shared' },
      { timeoutMs: 1000, attemptId: 'r2' },
    );
    const released = await manager('c3').acquire(
      { node: 'node-c', imageId: 'other', mode: 'exclusive' },
      { timeoutMs: 1000, attemptId: 'x' },
    );
    await released.release();

    const { entries, truncated, staleMs } = await inspectLocks(root, { staleMs: FAST.staleMs });
    expect(truncated).toBe(0);
    expect(staleMs).toBe(FAST.staleMs);
    expect(
      entries.map((e) => [
        e.node,
        e.imageId,
        e.mode,
        e.holder?.conductorId,
        e.holder?.attemptId,
        e.generation,
        e.liveness,
      ]),
    ).toEqual([
      ['node-a', 'img.qcow2', 'shared', 'c1', 'r1', undefined, 'live'],
      ['node-a', 'img.qcow2', 'shared', 'c2', 'r2', undefined, 'live'],
      ['node-b', 'img.qcow2', 'exclusive', 'c1', 'w1', writer.fencingToken, 'live'],
    ]);
    for (const entry of entries) {
      expect(entry.ageMs).toBeGreaterThanOrEqual(-1000);
      expect(entry.ageMs).toBeLessThan(FAST.staleMs);
      expect(Number.isNaN(Date.parse(entry.heartbeatAt))).toBe(false);
    }
  });

  it('filters by node and by image', async () => {
    await manager('c1').acquire({ node: 'node-a', imageId: 'one', mode: 'exclusive' }, { timeoutMs: 1000 });
    await manager('c1').acquire({ node: 'node-a', imageId: 'two', mode: 'exclusive' }, { timeoutMs: 1000 });
    await manager('c1').acquire({ node: 'node-b', imageId: 'one', mode: 'exclusive' }, { timeoutMs: 1000 });
    const byNode = await inspectLocks(root, { staleMs: 2000, node: 'node-a' });
    expect(byNode.entries.map((e) => `${e.node}/${e.imageId}`)).toEqual(['node-a/one', 'node-a/two']);
    const byImage = await inspectLocks(root, { staleMs: 2000, imageId: 'one' });
    expect(byImage.entries.map((e) => `${e.node}/${e.imageId}`)).toEqual(['node-a/one', 'node-b/one']);
    const both = await inspectLocks(root, { staleMs: 2000, node: 'node-b', imageId: 'two' });
    expect(both.entries).toEqual([]);
    const unknownNode = await inspectLocks(root, { staleMs: 2000, node: 'node-z' });
    expect(unknownNode.entries).toEqual([]);
  });

  it('marks an entry whose heartbeat mtime is older than the stale time as stale (informative)', async () => {
    // A holder that died: its entries stay behind with an mtime that no longer moves.
    const keyDir = path.join(root, 'node-a', 'locks', 'img');
    await fsp.mkdir(path.join(keyDir, 'g-7', 'h~dead~a1'), { recursive: true });
    await fsp.mkdir(path.join(keyDir, 'r~dead~a2'), { recursive: true });
    await makeEpoch(keyDir);
    const old = new Date(Date.now() - 60_000);
    await fsp.utimes(path.join(keyDir, 'g-7', 'h~dead~a1'), old, old);
    await fsp.utimes(path.join(keyDir, 'r~dead~a2'), old, old);
    const { entries } = await inspectLocks(root, { staleMs: 20_000 });
    expect(entries).toMatchObject([
      {
        mode: 'exclusive',
        generation: 7,
        holder: { conductorId: 'dead', attemptId: 'a1' },
        liveness: 'stale',
      },
      { mode: 'shared', holder: { conductorId: 'dead', attemptId: 'a2' }, liveness: 'stale' },
    ]);
    expect(entries[0]!.ageMs).toBeGreaterThanOrEqual(59_000);
  });

  it('shows a claimed generation whose holder entry is not there yet, without a holder', async () => {
    await fsp.mkdir(path.join(root, 'node-a', 'locks', 'img', 'g-3'), { recursive: true });
    await makeEpoch(path.join(root, 'node-a', 'locks', 'img'));
    const { entries } = await inspectLocks(root, { staleMs: 2000 });
    expect(entries).toMatchObject([{ node: 'node-a', imageId: 'img', mode: 'exclusive', generation: 3 }]);
    expect(entries[0]!.holder).toBeUndefined();
  });

  it('rejects ids that could leave the root, and never follows symlinks out of it', async () => {
    await expect(inspectLocks(root, { staleMs: 2000, node: '../x' })).rejects.toThrow(InvalidFieldError);
    await expect(inspectLocks(root, { staleMs: 2000, node: '../x' })).rejects.toThrow(/^node: /);
    await expect(inspectLocks(root, { staleMs: 2000, imageId: 'a/b' })).rejects.toThrow(/^image: /);
    await expect(inspectLocks(root, { staleMs: 2000, node: '' })).rejects.toThrow(InvalidFieldError);
    // A node folder that is a symlink to somewhere else holding lock-looking folders.
    await fsp.mkdir(path.join(outside, 'locks', 'img', 'g-1', 'h~evil~a'), { recursive: true });
    await fsp.symlink(outside, path.join(root, 'node-link'));
    await fsp.mkdir(path.join(root, 'node-real', 'locks'), { recursive: true });
    await fsp.symlink(path.join(outside, 'locks', 'img'), path.join(root, 'node-real', 'locks', 'img'));
    expect((await inspectLocks(root, { staleMs: 2000 })).entries).toEqual([]);
    expect((await inspectLocks(root, { staleMs: 2000, node: 'node-link' })).entries).toEqual([]);
    expect((await inspectLocks(root, { staleMs: 2000, node: 'node-real', imageId: 'img' })).entries).toEqual(
      [],
    );
  });

  it('ignores stray files and odd names, and caps the answer', async () => {
    await fsp.mkdir(path.join(root, 'node-a', 'locks'), { recursive: true });
    await fsp.writeFile(path.join(root, 'node-a', 'locks', 'stray.txt'), 'x');
    await fsp.mkdir(path.join(root, '.hidden', 'locks', 'img', 'g-1', 'h~c~a'), { recursive: true });
    for (const image of ['i1', 'i2', 'i3'])
      await manager('c1').acquire({ node: 'node-a', imageId: image, mode: 'exclusive' }, { timeoutMs: 1000 });
    const capped = await inspectLocks(root, { staleMs: 2000, limit: 2 });
    expect(capped.entries.map((e) => e.imageId)).toEqual(['i1', 'i2']);
    expect(capped.truncated).toBe(1);
  });

  it('a scan out of its time budget answers what it found and says it is cut', async () => {
    for (const node of ['n0', 'n1', 'n2', 'n3'])
      await manager('c1').acquire({ node, imageId: 'img', mode: 'exclusive' }, { timeoutMs: 1000 });
    let tick = 0;
    const monotonic = () => (tick += 1000); // every look at the clock: one more second
    const cut = await inspectLocks(root, { staleMs: 2000, budgetMs: 2500, monotonic });
    expect(cut).toMatchObject({ complete: false, nodesTotal: 4 });
    expect(cut.nodesScanned).toBeLessThan(4);
    expect(cut.entries.map((e) => e.node)).toEqual(['n0', 'n1'].slice(0, cut.nodesScanned));
    expect(await inspectLocks(root, { staleMs: 2000 })).toMatchObject({ complete: true, nodesScanned: 4 });
  });

  it('reads an empty or missing root as no locks', async () => {
    expect((await inspectLocks(root, { staleMs: 2000 })).entries).toEqual([]);
    expect((await inspectLocks(path.join(root, 'missing'), { staleMs: 2000 })).entries).toEqual([]);
  });
});

describe('readLockActivity (one readdir of a key folder)', () => {
  let root: string;
  const managers: NodeLockManager[] = [];
  const manager = (conductorId: string) => {
    const m = new NodeLockManager({ root, conductorId, timings: FAST });
    managers.push(m);
    return m;
  };

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-activity-'));
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('counts readers by holder and tells whether a writer holds the gate', async () => {
    const key = { node: 'node-a', imageId: 'img' };
    expect(await readLockActivity(root, key)).toEqual({ readers: [], exclusive: false });
    const r1 = await manager('c1').acquire({ ...key, mode: 'shared' }, { timeoutMs: 1000, attemptId: 'r1' });
    await manager('c2').acquire({ ...key, mode: 'shared' }, { timeoutMs: 1000, attemptId: 'r2' });
    const activity = await readLockActivity(root, key);
    expect(activity.exclusive).toBe(false);
    expect(activity.readers.map((h) => `${h.conductorId}/${h.attemptId}`).sort()).toEqual(['c1/r1', 'c2/r2']);
    await r1.release();
    expect((await readLockActivity(root, key)).readers).toHaveLength(1);
    await managers[1]!.releaseAll();
    const writer = await manager('c3').acquire({ ...key, mode: 'exclusive' }, { timeoutMs: 1000 });
    expect(await readLockActivity(root, key)).toEqual({
      readers: [],
      exclusive: true,
      generation: writer.fencingToken,
    });
    await writer.release();
    expect(await readLockActivity(root, key)).toEqual({
      readers: [],
      exclusive: false,
      generation: writer.fencingToken,
    });
  });

  it('validates the key', async () => {
    await expect(readLockActivity(root, { node: '..', imageId: 'img' })).rejects.toBeInstanceOf(
      InvalidFieldError,
    );
  });
});
