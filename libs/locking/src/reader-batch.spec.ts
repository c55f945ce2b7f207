import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HeldLock } from './held-lock';
import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';
import { tempManagers } from './temp-managers.fixture';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const KEY = { node: 'src', imageId: 'img' };
const WAIT = { timeoutMs: 10_000 };

/** Counts the gate claims (mkdir of a generation folder) a manager makes; can fail stats of a pattern. */
class CountingCalls implements LockFileSystem {
  claims = 0;
  failStat?: RegExp;
  onStat?: (target: string) => void;
  readdir = nodeLockFileSystem.readdir;
  mkdir = async (dir: string, options?: { recursive?: boolean }) => {
    if (/\/g-\d+$/.test(dir)) this.claims++;
    return nodeLockFileSystem.mkdir(dir, options);
  };
  stat = async (target: string) => {
    this.onStat?.(target);
    if (this.failStat?.test(target))
      throw Object.assign(new Error(`EIO: i/o error, stat '${target}'`), { code: 'EIO' });
    return nodeLockFileSystem.stat(target);
  };
  rm = nodeLockFileSystem.rm;
  rename = nodeLockFileSystem.rename;
}

/** Lets the event loop run until `done` holds (no timing asserted: a bound only against a hang). */
async function settle(done: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
}

/**
 * Shared waiters of one key in one process are admitted together under one claim of the gate
 * (reader-batch.ts): on a network file system each claim costs some twenty round trips, and a fan-out
 * queues many copies of one source in one conductor. Each still gets its own entry, and the order
 * between shared and exclusive waiters stays first come, first served.
 */
describe('readers admitted together', () => {
  const t = tempManagers('icc-batch-', FAST);
  const keyDir = () => path.join(t.root, KEY.node, 'locks', KEY.imageId);
  const readerEntries = async () => (await fsp.readdir(keyDir())).filter((n) => n.startsWith('r~')).sort();

  it('admits the shared waiters queued behind the head under its one gate claim, each with its own entry', async () => {
    const writer = t.manager('w');
    const fs = new CountingCalls();
    const readers = t.manager('r', fs);
    const held = await writer.acquire({ ...KEY, mode: 'exclusive' }, WAIT);
    const waiting = Array.from({ length: 8 }, (_, i) =>
      readers.acquire({ ...KEY, mode: 'shared' }, { ...WAIT, attemptId: `a${i}` }),
    );
    await settle(() => readers.localWaiters(KEY) === 7);
    expect(readers.localWaiters(KEY)).toBe(7);
    await held.release();
    const locks = await Promise.all(waiting);
    expect(fs.claims).toBe(1);
    expect(await readerEntries()).toEqual(Array.from({ length: 8 }, (_, i) => `r~r~a${i}`));
    expect(new Set(locks.map((l) => l.fencingToken)).size).toBe(1);
    // Each is released on its own: the others' entries stay until theirs are released.
    await locks[0]!.release();
    expect(await readerEntries()).toHaveLength(7);
    await Promise.all(locks.slice(1).map((l) => l.release()));
    expect(await readerEntries()).toEqual([]);
  });

  it('never takes a shared waiter past an exclusive one queued before it', async () => {
    const writer = t.manager('w');
    const local = t.manager('l');
    const held = await writer.acquire({ ...KEY, mode: 'exclusive' }, WAIT);
    const order: string[] = [];
    const take = (name: string, mode: 'shared' | 'exclusive') =>
      local.acquire({ ...KEY, mode }, { ...WAIT, attemptId: name }).then((lock) => {
        order.push(name);
        return lock;
      });
    const s1 = take('s1', 'shared');
    const s2 = take('s2', 'shared');
    const x = take('x', 'exclusive');
    const s3 = take('s3', 'shared');
    await settle(() => local.localWaiters(KEY) === 3);
    await held.release();
    const firstTwo = await Promise.all([s1, s2]);
    // The exclusive waiter drains s1 and s2: s3, behind it, waits for it.
    await settle(() => order.length >= 2);
    expect([...order].sort()).toEqual(['s1', 's2']);
    await Promise.all(firstTwo.map((l) => l.release()));
    const exclusive = await x;
    expect(order).toContain('x');
    expect(order).not.toContain('s3');
    await exclusive.release();
    await (await s3).release();
    expect(order.at(-1)).toBe('s3');
  });

  it('fails every reader of the batch, leaving no entry, when the check of the gate fails', async () => {
    const writer = t.manager('w');
    const fs = new CountingCalls();
    const readers = t.manager('r', fs);
    const held = await writer.acquire({ ...KEY, mode: 'exclusive' }, WAIT);
    const waiting = Array.from({ length: 4 }, (_, i) =>
      readers.acquire({ ...KEY, mode: 'shared' }, { ...WAIT, attemptId: `a${i}` }).then(
        (lock: HeldLock) => lock,
        (error: Error) => error,
      ),
    );
    await settle(() => readers.localWaiters(KEY) === 3);
    fs.failStat = /\/g-\d+\/h~r~/; // the gate's holder entry: the check after the readers' entries exist
    await held.release();
    const outcomes = await Promise.all(waiting);
    for (const outcome of outcomes) expect(String(outcome)).toMatch(/EIO/);
    expect(fs.claims).toBe(1);
    expect(await readerEntries()).toEqual([]);
    expect(readers.heldLocks()).toEqual([]);
  });

  it('releases a follower whose caller gave up while the head registered it', async () => {
    const writer = t.manager('w');
    const fs = new CountingCalls();
    const readers = t.manager('r', fs);
    const held = await writer.acquire({ ...KEY, mode: 'exclusive' }, WAIT);
    const head = readers.acquire({ ...KEY, mode: 'shared' }, { ...WAIT, attemptId: 'head' });
    const cancel = new AbortController();
    const follower = readers
      .acquire({ ...KEY, mode: 'shared' }, { ...WAIT, attemptId: 'late', signal: cancel.signal })
      .catch((error: Error) => error);
    await settle(() => readers.localWaiters(KEY) === 1);
    // The check of the gate comes once both entries exist: the follower was taken along; its caller
    // gives up right then.
    fs.onStat = (target) => {
      if (/\/g-\d+\/h~r~/.test(target)) cancel.abort(new Error('cancelled by its caller'));
    };
    await held.release();
    const lock = await head;
    expect(cancel.signal.aborted).toBe(true);
    expect(String(await follower)).toMatch(/cancelled by its caller/);
    expect(await readerEntries()).toEqual(['r~r~head']);
    await lock.release();
  });
});
