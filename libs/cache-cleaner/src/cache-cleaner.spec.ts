import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidFieldError } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import { CacheCleaner, type CleanerLogger } from './cache-cleaner';
import { DAY_MS, HOUR_MS, MINUTE_MS } from './cleaner-policy';
import { summarizeCleanReport } from './clean-report';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const NODE = 'node-a';

describe('CacheCleaner (real folders, fixed meta times)', () => {
  let root: string;
  let store: ImageStore;
  let locks: NodeLockManager;
  let other: NodeLockManager;
  const logged: string[] = [];
  const log: CleanerLogger = {
    info: (_f, m) => logged.push(m),
    warn: (f, m) => logged.push(`WARN ${m} ${JSON.stringify(f)}`),
  };
  /** The fixed "now" every age is measured from (close to the real clock: a copy's touch writes real time). */
  const NOW = Date.now();
  const now = () => NOW;

  beforeEach(async () => {
    root = await makeTempDir('cleaner');
    store = new ImageStore({ root, fsync: false });
    await store.markers.registerNode(NODE, 'cache-cleaner.spec');
    locks = new NodeLockManager({ root, conductorId: 'cleaner', timings: FAST });
    other = new NodeLockManager({ root, conductorId: 'copier', timings: FAST });
    logged.length = 0;
  });
  afterEach(async () => {
    await other.releaseAll();
    await locks.releaseAll();
    await removeDir(root);
  });

  /** Publishes an image of `bytes` bytes whose meta says it was last used `agoMs` before NOW. */
  async function seed(imageId: string, bytes: number, agoMs: number, node = NODE): Promise<void> {
    const file = path.join(root, `.seed-${imageId}`);
    await fsp.writeFile(file, Buffer.alloc(bytes, 7));
    const meta = await store.imports.importImage(node, imageId, file);
    await fsp.rm(file);
    const at = new Date(NOW - agoMs).toISOString();
    await fsp.writeFile(
      store.entries.metaPath(node, imageId),
      JSON.stringify({ ...meta, createdAt: at, lastUsedAt: at }),
    );
  }

  async function present(node = NODE): Promise<string[]> {
    return (await store.entries.listImages(node)).map((m) => m.imageId);
  }

  const cleaner = (policy = {}) => new CacheCleaner(store, locks, policy, log);

  it('evicts by age only what was unused for longer than maxUnusedMs (default 14 days), oldest first', async () => {
    await seed('used-20d', 100, 20 * DAY_MS);
    await seed('used-15d', 200, 15 * DAY_MS);
    await seed('used-13d', 300, 13 * DAY_MS);
    await seed('used-1h', 400, HOUR_MS);
    const report = await cleaner().clean(NODE, { now });
    expect(report.deleted.map((d) => [d.imageId, d.size, d.why])).toEqual([
      ['used-20d', 100, 'unused'],
      ['used-15d', 200, 'unused'],
    ]);
    expect(report).toMatchObject({
      examined: 4,
      bytesBefore: 1000,
      bytesFreed: 300,
      bytesAfter: 700,
      keptPinned: [],
      skippedBusy: [],
      errors: [],
      overBudget: false,
      aborted: false,
    });
    for (const d of report.deleted) expect(d.deletedAt! >= d.lockedAt!).toBe(true);
    expect(await present()).toEqual(['used-13d', 'used-1h']);
    expect(await fsp.readdir(store.nodeLayout(NODE).images)).toEqual([
      'used-13d',
      'used-13d.meta.json',
      'used-13d~pieces.json',
      'used-1h',
      'used-1h.meta.json',
      'used-1h~pieces.json',
    ]);
    expect(logged.filter((m) => m === 'cache image deleted')).toHaveLength(2);
    expect(summarizeCleanReport(report)).toMatch(
      /^node node-a: examined 4, deleted 2 \(300 bytes\), kept pinned 0, skipped busy 0, bytes after 700$/,
    );
    // maxUnusedMs given per run overrides the cleaner's policy.
    expect(
      (await cleaner().clean(NODE, { now, maxUnusedMs: 2 * HOUR_MS })).deleted.map((d) => d.imageId),
    ).toEqual(['used-13d']);
  });

  it('evicts least recently used first while over budget, never inside the grace time', async () => {
    for (const [id, ago] of [
      ['e', 10 * MINUTE_MS],
      ['a', 5 * HOUR_MS],
      ['c', 3 * HOUR_MS],
      ['d', 30 * MINUTE_MS],
      ['b', 4 * HOUR_MS],
    ] as const)
      await seed(id, 100, ago);
    // 500 bytes, budget 300: the two least recently used go, and then it fits.
    let report = await cleaner({ budgetBytes: 300 }).clean(NODE, { now });
    expect(report.deleted.map((d) => [d.imageId, d.why])).toEqual([
      ['a', 'over-budget'],
      ['b', 'over-budget'],
    ]);
    expect(report).toMatchObject({ bytesAfter: 300, overBudget: false });
    // Budget 50: c goes; d and e were used within the hour of grace, so the node stays over budget.
    report = await cleaner({ budgetBytes: 50 }).clean(NODE, { now });
    expect(report.deleted.map((d) => d.imageId)).toEqual(['c']);
    expect(report).toMatchObject({ bytesBefore: 300, bytesAfter: 200, overBudget: true });
    expect(await present()).toEqual(['d', 'e']);
    // A shorter grace lets d go, and then e.
    report = await cleaner({ budgetBytes: 50, graceMs: 5 * MINUTE_MS }).clean(NODE, { now });
    expect(report.deleted.map((d) => d.imageId)).toEqual(['d', 'e']);
    expect(report.overBudget).toBe(false);
  });

  it('never deletes a pinned image, by age or for the budget', async () => {
    await seed('old-pinned', 100, 30 * DAY_MS);
    await seed('old', 100, 30 * DAY_MS);
    await seed('lru-pinned', 1000, 2 * HOUR_MS);
    await seed('newer', 100, 90 * MINUTE_MS);
    await store.markers.pin(NODE, 'old-pinned');
    await fsp.mkdir(path.join(store.nodeLayout(NODE).pinned, 'lru-pinned')); // an operator's mkdir works too
    const report = await cleaner({ budgetBytes: 100 }).clean(NODE, { now });
    expect(report.deleted.map((d) => [d.imageId, d.why])).toEqual([
      ['old', 'unused'],
      ['newer', 'over-budget'],
    ]);
    expect(report.keptPinned).toEqual(['old-pinned', 'lru-pinned']);
    expect(report).toMatchObject({ bytesAfter: 1100, overBudget: true });
    const everything = await cleaner().clean(NODE, { now, maxUnusedMs: 0, budgetBytes: 1, graceMs: 0 });
    expect(everything.deleted).toEqual([]);
    expect(await present()).toEqual(['lru-pinned', 'old-pinned']);
  });

  it('skips an image a copy is reading or writing, and deletes it once the lock is free', async () => {
    await seed('read', 100, 30 * DAY_MS);
    await seed('written', 100, 30 * DAY_MS);
    const reader = await other.acquire({ node: NODE, imageId: 'read', mode: 'shared' }, { timeoutMs: 1000 });
    const writer = await other.acquire(
      { node: NODE, imageId: 'written', mode: 'exclusive' },
      { timeoutMs: 1000 },
    );
    let report = await cleaner().clean(NODE, { now });
    expect(report.skippedBusy).toEqual(['read', 'written']);
    expect(report.deleted).toEqual([]);
    expect(reader.lost || writer.lost).toBe(false);
    await reader.release();
    await writer.release();
    report = await cleaner().clean(NODE, { now });
    expect(report.deleted.map((d) => d.imageId)).toEqual(['read', 'written']);
  });

  it('waits only lockWaitMs for a lock that turns busy between the look and the gate', async () => {
    await seed('img', 100, 30 * DAY_MS);
    // The reader arrives right after the cleaner's look at the lock folder, before it claims the gate.
    const racing = Object.create(locks) as NodeLockManager;
    racing.acquire = async (request, options) => {
      const reader = await other.acquire({ ...request, mode: 'shared' }, { timeoutMs: 1000 });
      setTimeout(() => void reader.release(), 2_000);
      return locks.acquire(request, options);
    };
    // Had it waited for the reader (2 s), it would have deleted the image.
    const report = await new CacheCleaner(store, racing, { lockWaitMs: 300 }, log).clean(NODE, { now });
    expect(report.skippedBusy).toEqual(['img']);
    expect(await present()).toEqual(['img']);
  });

  it('checks age and pin again under the lock: an image used or pinned meanwhile is kept', async () => {
    await seed('used-meanwhile', 100, 30 * DAY_MS);
    await seed('pinned-meanwhile', 100, 30 * DAY_MS);
    await seed('lru-used-meanwhile', 100, 3 * HOUR_MS);
    const racing = Object.create(locks) as NodeLockManager;
    racing.acquire = async (request, options) => {
      // What a copy or an operator did between the cleaner's listing and its lock.
      if (request.imageId === 'pinned-meanwhile') await store.markers.pin(NODE, request.imageId);
      else await store.copies.touchLastUsed(NODE, request.imageId);
      return locks.acquire(request, options);
    };
    const report = await new CacheCleaner(store, racing, { budgetBytes: 1 }, log).clean(NODE, { now });
    expect(report.deleted).toEqual([]);
    expect(report.keptChanged).toEqual(['used-meanwhile', 'lru-used-meanwhile']);
    expect(report.keptPinned).toEqual(['pinned-meanwhile']);
    expect(await present()).toEqual(['lru-used-meanwhile', 'pinned-meanwhile', 'used-meanwhile']);
  });

  it('removes orphans (an image without meta once older than the grace time, a meta without image, a piece list alone)', async () => {
    await seed('no-meta-old', 100, 0);
    await fsp.rm(store.entries.metaPath(NODE, 'no-meta-old'));
    const old = new Date(NOW - 2 * HOUR_MS);
    await fsp.utimes(store.entries.imagePath(NODE, 'no-meta-old'), old, old);
    await seed('no-meta-new', 100, 0);
    await fsp.rm(store.entries.metaPath(NODE, 'no-meta-new'));
    await fsp.utimes(store.entries.imagePath(NODE, 'no-meta-new'), new Date(NOW), new Date(NOW));
    await seed('no-image', 100, 0);
    await fsp.rm(store.entries.imagePath(NODE, 'no-image'));
    // What a delete by a release that does not know piece lists leaves: the list alone.
    await seed('list-only', 100, 0);
    await fsp.rm(store.entries.metaPath(NODE, 'list-only'));
    await fsp.rm(store.entries.imagePath(NODE, 'list-only'));
    expect((await store.entries.entry(NODE, 'list-only')).problem).toMatch(/^only a piece list is left/);
    const report = await cleaner().clean(NODE, { now });
    expect(report.deleted.map((d) => [d.imageId, d.size, d.why])).toEqual([
      ['list-only', 0, 'orphan'],
      ['no-image', 0, 'orphan'],
      ['no-meta-old', 100, 'orphan'],
    ]);
    // An image between its rename and its meta keeps its list (and is kept for the grace time).
    expect(await fsp.readdir(store.nodeLayout(NODE).images)).toEqual([
      'no-meta-new',
      'no-meta-new~pieces.json',
    ]);
  });

  it('counts a last use recorded in used/<imageId> (the meta is never rewritten for it)', async () => {
    await seed('read-now', 100, 20 * DAY_MS);
    await seed('never-read', 100, 20 * DAY_MS);
    await store.copies.touchLastUsed(NODE, 'read-now');
    const report = await cleaner().clean(NODE, { now });
    expect(report.deleted.map((d) => d.imageId)).toEqual(['never-read']);
    expect(await present()).toEqual(['read-now']);
  });

  it('removes files a network mount hid in images/ once hidden longer than the grace time', async () => {
    await seed('img', 100, HOUR_MS);
    const images = store.nodeLayout(NODE).images;
    for (const name of ['.fuse_hidden0000000400000001', '.nfs000000000012345600000001'])
      await fsp.writeFile(path.join(images, name), '{"v":1}');
    const dry = await cleaner().clean(NODE, { now: () => Date.now() + 2 * HOUR_MS, dryRun: true });
    expect(dry.litterRemoved).toHaveLength(2);
    // Hidden just now: the file it was may still be open somewhere.
    const soon = await cleaner().clean(NODE, { now });
    expect(soon.litterRemoved).toEqual([]);
    const later = await cleaner().clean(NODE, {
      now: () => Date.now() + 2 * HOUR_MS,
      maxUnusedMs: 30 * DAY_MS,
    });
    expect(later.litterRemoved).toEqual(['.fuse_hidden0000000400000001', '.nfs000000000012345600000001']);
    expect(summarizeCleanReport(later)).toContain('removed hidden files 2');
    expect((await fsp.readdir(images)).sort()).toEqual(['img', 'img.meta.json', 'img~pieces.json']);
  });

  it('dry run: reports what would go, takes no lock, changes nothing', async () => {
    await seed('old', 100, 30 * DAY_MS);
    await seed('busy', 100, 30 * DAY_MS);
    await seed('new', 100, 0);
    const reader = await other.acquire({ node: NODE, imageId: 'busy', mode: 'shared' }, { timeoutMs: 1000 });
    const lockDirsBefore = await fsp.readdir(store.nodeLayout(NODE).locks);
    const report = await cleaner().clean(NODE, { now, dryRun: true });
    expect(report).toMatchObject({ dryRun: true, bytesFreed: 100, bytesAfter: 200, skippedBusy: ['busy'] });
    expect(report.deleted).toEqual([
      { imageId: 'old', size: 100, why: 'unused', lastUsedAt: expect.any(String) },
    ]);
    expect(await present()).toEqual(['busy', 'new', 'old']);
    expect(await fsp.readdir(store.nodeLayout(NODE).locks)).toEqual(lockDirsBefore);
    expect(summarizeCleanReport(report)).toMatch(/would delete 1 \(100 bytes\)/);
    await reader.release();
  });

  it('takes over the entry of a dead reader once its heartbeat stayed unchanged for the stale time', async () => {
    await seed('img', 100, 30 * DAY_MS);
    // A reader that died: its heartbeat folder stays, never refreshed.
    await fsp.mkdir(path.join(store.nodeLayout(NODE).locks, 'img', 'r~dead-conductor~a1'), {
      recursive: true,
    });
    const c = cleaner();
    expect((await c.clean(NODE, { now })).skippedBusy).toEqual(['img']);
    await new Promise((r) => setTimeout(r, FAST.staleMs + 100));
    const report = await c.clean(NODE, { now });
    expect(report.deleted.map((d) => d.imageId)).toEqual(['img']);
    expect(await fsp.readdir(path.join(store.nodeLayout(NODE).locks, 'img'))).not.toContain(
      'r~dead-conductor~a1',
    );
  }, 15_000);

  it('stops between images when its signal aborts', async () => {
    await seed('a', 100, 30 * DAY_MS);
    const controller = new AbortController();
    controller.abort(new Error('shutdown'));
    const report = await cleaner().clean(NODE, { now, signal: controller.signal });
    expect(report).toMatchObject({ aborted: true, deleted: [] });
  });

  it('validates the node id and the policy, naming the field', async () => {
    await expect(cleaner().clean('../etc')).rejects.toThrow(/^node: /);
    expect(() => cleaner({ maxUnusedMs: -1 })).toThrow(InvalidFieldError);
    expect(() => cleaner({ graceMs: 1.5 })).toThrow(/^graceMs: must be a non-negative whole number/);
    await expect(cleaner().clean(NODE, { budgetBytes: -5 })).rejects.toThrow(/^budgetBytes: /);
    expect(cleaner({ budgetBytes: 0 }).defaults).toEqual({
      maxUnusedMs: 14 * DAY_MS,
      graceMs: HOUR_MS,
      lockWaitMs: 1000,
    });
    expect((await cleaner().clean('node-empty')).examined).toBe(0);
  });
});
