import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NodeLockManager } from '@app/locking';
import { LockScanTimeoutError, LockTable } from './lock-table';
import { InvalidQueryError } from './locks-query';

const TIMINGS = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };

describe('LockTable', () => {
  let root: string;
  let locks: NodeLockManager;
  let now = 0;
  const table = () =>
    new LockTable({ cacheRoot: root, staleMs: TIMINGS.staleMs, conductorId: 'me', now: () => now });

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-lock-table-'));
    locks = new NodeLockManager({ root, conductorId: 'me', timings: TIMINGS });
  });
  afterEach(async () => {
    await locks.releaseAll();
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('lists entries with the filter, marks this conductor’s own, and reuses a fresh answer', async () => {
    const t = table();
    await locks.acquire({ node: 'node-a', imageId: 'img', mode: 'exclusive' }, { timeoutMs: 1000 });
    const other = new NodeLockManager({ root, conductorId: 'other', timings: TIMINGS });
    await other.acquire({ node: 'node-b', imageId: 'img', mode: 'shared' }, { timeoutMs: 1000 });
    const all = await t.list({});
    expect(all.entries.map((e) => [e.node, e.mode, e.heldHere])).toEqual([
      ['node-a', 'exclusive', true],
      ['node-b', 'shared', false],
    ]);
    expect(all.filter).toEqual({});
    expect(all.note).toMatch(/informative/);
    expect((await t.list({ node: 'node-b' })).filter).toEqual({ node: 'node-b' });

    await locks.releaseAll();
    now += 100;
    expect((await t.list({})).entries).toHaveLength(2); // cached
    now += 500;
    expect((await t.list({})).entries.map((e) => e.node)).toEqual(['node-b']);
    await other.releaseAll();
  });

  it('refuses a bad query before touching the file system', () => {
    expect(() => table().list({ node: '../etc' })).toThrow(InvalidQueryError);
  });

  it('answers LockScanTimeoutError when CACHE_ROOT hangs, and never starts a second scan behind the hung one', async () => {
    vi.useFakeTimers();
    try {
      let clock = 0;
      const inspect = vi.fn(() => new Promise<never>(() => {})); // a readdir into a dead mount
      const table = new LockTable({
        cacheRoot: '/nowhere',
        staleMs: 2000,
        conductorId: 'me',
        timeoutMs: 2000,
        now: () => clock,
        inspect,
      });
      const first = table.list({}).catch((e: unknown) => e);
      await vi.advanceTimersByTimeAsync(2000);
      expect(await first).toBeInstanceOf(LockScanTimeoutError);
      clock += 5000; // long past the cache time: still the same scan
      const second = table.list({}).catch((e: unknown) => e);
      await vi.advanceTimersByTimeAsync(2000);
      expect(await second).toBeInstanceOf(LockScanTimeoutError);
      expect(inspect).toHaveBeenCalledTimes(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
