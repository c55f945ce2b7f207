import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReasonError } from '@app/contracts';
import { makeEpoch } from './key-folder.fixture';
import { readLockActivity } from './lock-inspector';
import { NodeLockManager } from './node-lock-manager';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };

describe('NodeLockManager (one process, real files)', () => {
  let root: string;
  const managers: NodeLockManager[] = [];
  const manager = (conductorId: string, timings = FAST) => {
    const m = new NodeLockManager({ root, conductorId, timings });
    managers.push(m);
    return m;
  };

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-lock-'));
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('writes the holder identity into the lock folder and releases it', async () => {
    const lock = await manager('c1').acquire(
      { node: 'n1', imageId: 'img', mode: 'exclusive' },
      { timeoutMs: 1000, attemptId: 'a1' },
    );
    const keyDir = path.join(root, 'n1', 'locks', 'img');
    const gen = `g-${lock.fencingToken}`;
    expect(await fsp.readdir(path.join(keyDir, gen))).toEqual(['h~c1~a1']);
    expect(await lock.isStillHeld()).toBe(true);
    await lock.release();
    expect(await fsp.readdir(keyDir)).toEqual(expect.arrayContaining([gen, `${gen}.released`]));
    expect(await lock.isStillHeld()).toBe(false);
  });

  it('hands an exclusive lock between two managers (as between processes) in increasing generations', async () => {
    const a = manager('a');
    const b = manager('b');
    const key = { node: 'n1', imageId: 'img', mode: 'exclusive' as const };
    const first = await a.acquire(key, { timeoutMs: 1000 });
    let bGot = false;
    const second = b.acquire(key, { timeoutMs: 5000 }).then((l) => {
      bGot = true;
      return l;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(bGot).toBe(false);
    await first.release();
    const lockB = await second;
    expect(lockB.fencingToken).toBeGreaterThan(first.fencingToken);
    expect(lockB.tookOverStale).toBe(false);
  });

  it('ends a bounded wait with a retryable LOCK_TIMEOUT', async () => {
    const key = { node: 'n1', imageId: 'img', mode: 'exclusive' as const };
    await manager('a').acquire(key, { timeoutMs: 1000 });
    const error = await manager('b')
      .acquire(key, { timeoutMs: 150 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReasonError);
    expect((error as ReasonError).code).toBe('LOCK_TIMEOUT');
    expect((error as ReasonError).retryable).toBe(true);
  });

  it('lets many readers in together, makes a writer wait for them, and queues new readers behind the writer', async () => {
    const key = { node: 'src', imageId: 'img' };
    const readers = await Promise.all(
      ['r1', 'r2', 'r3'].map((id) => manager(id).acquire({ ...key, mode: 'shared' }, { timeoutMs: 2000 })),
    );
    expect(readers.every((r) => r.mode === 'shared')).toBe(true);
    const order: string[] = [];
    const writer = manager('w')
      .acquire({ ...key, mode: 'exclusive' }, { timeoutMs: 5000 })
      .then((l) => {
        order.push('writer');
        return l;
      });
    // The writer has claimed the gate (and now waits for the readers to leave): later readers queue behind it.
    for (
      let i = 0;
      !(await readLockActivity(root, { node: key.node, imageId: key.imageId })).exclusive;
      i++
    ) {
      if (i > 500) throw new Error('the writer never claimed the gate');
      await new Promise((r) => setTimeout(r, 10));
    }
    const lateReader = manager('late')
      .acquire({ ...key, mode: 'shared' }, { timeoutMs: 5000 })
      .then((l) => {
        order.push('late reader');
        return l;
      });
    await new Promise((r) => setTimeout(r, 100));
    expect(order).toEqual([]);
    for (const r of readers) await r.release();
    const w = await writer;
    await new Promise((r) => setTimeout(r, 100));
    expect(order).toEqual(['writer']);
    await w.release();
    await lateReader;
    expect(order).toEqual(['writer', 'late reader']);
  });

  it('takes two locks in one global order, so opposite requests cannot deadlock', async () => {
    const a = manager('a');
    const b = manager('b');
    const rounds = 20;
    const run = (m: NodeLockManager, from: string, to: string) =>
      (async () => {
        for (let i = 0; i < rounds; i++) {
          const set = await m.acquireAll(
            [
              { node: from, imageId: 'img', mode: 'shared' },
              { node: to, imageId: 'img', mode: 'exclusive' },
            ],
            { timeoutMs: 10_000 },
          );
          await set.release();
        }
      })();
    await Promise.all([run(a, 'n1', 'n2'), run(b, 'n2', 'n1')]);
  });

  it('refuses bad ids with an error naming the field', async () => {
    const m = manager('a');
    for (const [key, field] of [
      [{ node: '../x', imageId: 'img' }, 'node'],
      [{ node: 'n', imageId: '' }, 'imageId'],
      [{ node: 'n'.repeat(300), imageId: 'img' }, 'node'],
      [{ node: 'n', imageId: 'a\u0001b' }, 'imageId'],
    ] as const) {
      await expect(m.acquire({ ...key, mode: 'exclusive' }, { timeoutMs: 100 })).rejects.toThrow(
        new RegExp(`^${field}:`),
      );
    }
  });

  it('takes over a lock whose heartbeat stopped, only after watching it for the stale time', async () => {
    // A dead holder's leftovers, with an mtime far in the future (clock skew must not keep it alive).
    const keyDir = path.join(root, 'n1', 'locks', 'img');
    const beat = path.join(keyDir, 'g-7', 'h~dead~x');
    await fsp.mkdir(beat, { recursive: true });
    await makeEpoch(keyDir);
    const future = new Date(Date.now() + 3600_000);
    await fsp.utimes(beat, future, future);
    const started = performance.now();
    const lock = await manager('a').acquire(
      { node: 'n1', imageId: 'img', mode: 'exclusive' },
      { timeoutMs: 10_000 },
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(FAST.staleMs);
    expect(lock.tookOverStale).toBe(true);
    expect(lock.fencingToken).toBe(8);
  });

  it('tells a holder its lock is lost when the lock folder is removed by hand, and lets the next one in', async () => {
    const holder = await manager('a').acquire(
      { node: 'n1', imageId: 'img', mode: 'exclusive' },
      { timeoutMs: 1000 },
    );
    await fsp.rm(path.join(root, 'n1', 'locks'), { recursive: true });
    expect(await holder.isStillHeld()).toBe(false);
    expect(holder.signal.aborted).toBe(true);
    expect((holder.signal.reason as ReasonError).code).toBe('LOCK_LOST');
    const next = await manager('b').acquire(
      { node: 'n1', imageId: 'img', mode: 'exclusive' },
      { timeoutMs: 1000 },
    );
    expect(await next.isStillHeld()).toBe(true);
  });

  it('queues waiters of one process in FIFO order', async () => {
    const m = manager('a');
    const key = { node: 'n1', imageId: 'img', mode: 'exclusive' as const };
    const first = await m.acquire(key, { timeoutMs: 1000 });
    const order: number[] = [];
    const waiters = [1, 2, 3, 4].map((i) =>
      m.acquire(key, { timeoutMs: 5000 }).then(async (l) => {
        order.push(i);
        await l.release();
      }),
    );
    await new Promise((r) => setTimeout(r, 20));
    expect(m.localWaiters(key)).toBe(4);
    await first.release();
    await Promise.all(waiters);
    expect(order).toEqual([1, 2, 3, 4]);
  });
});
