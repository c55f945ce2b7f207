import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HeldLock } from './held-lock';
import { NodeLockManager } from './node-lock-manager';
import { PollBudget, libuvPoolSize, pollBudgetSize } from './poll-budget';
import { SlowThreadPool } from './slow-thread-pool.fixture';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the poll budget', () => {
  it("is half of libuv's thread pool, at least one and at most 8", () => {
    expect(pollBudgetSize(4)).toBe(2);
    expect(pollBudgetSize(16)).toBe(8);
    // The conductor's pool of 64: its polls stay as many as before the pool grew.
    expect(pollBudgetSize(64)).toBe(8);
    expect(pollBudgetSize(1)).toBe(1);
  });

  it('runs at most its size of polls at once, the others in the order they came', async () => {
    const budget = new PollBudget(2);
    const signal = new AbortController().signal;
    let running = 0;
    let most = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        budget.run(signal, async () => {
          order.push(i);
          most = Math.max(most, ++running);
          await sleep(5);
          running--;
        }),
      ),
    );
    expect(most).toBe(2);
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(budget.inFlight + budget.waiting).toBe(0);
  });

  it('drops a poll whose wait ends before its turn, and frees the turn of a poll that throws', async () => {
    const budget = new PollBudget(1);
    const never = new AbortController().signal;
    const first = budget.run(never, () => sleep(20));
    const ends = new AbortController();
    const dropped = budget.run(ends.signal, async () => 'ran');
    ends.abort(new Error('deadline'));
    await expect(dropped).rejects.toThrow('deadline');
    await first;
    await expect(budget.run(never, () => Promise.reject(new Error('EIO')))).rejects.toThrow('EIO');
    expect((await budget.run(never, async () => 'next')).result).toBe('next');
  });
});

/**
 * One process waiting on 30 keys at once through a slow mount (GlusterFS without client caches: the
 * never-used-keys race of test/locking-processes.e2e-spec.ts), its calls through libuv's pool of 4
 * threads. Without the budget every wait kept a call in the pool's queue, so a heartbeat's refresh (or a
 * claim) queued behind 26 polls.
 */
describe('waits on many keys through a slow thread pool', () => {
  let root: string;
  const managers: NodeLockManager[] = [];
  const KEYS = Array.from({ length: 30 }, (_, i) => ({
    node: 'n1',
    imageId: `k${i}`,
    mode: 'exclusive' as const,
  }));

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-poll-budget-'));
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('keep no more polls in the pool than the budget, so a heartbeat never queues behind them, and all get their keys', async () => {
    const holder = new NodeLockManager({ root, conductorId: 'holder', timings: FAST });
    managers.push(holder);
    const held: HeldLock[] = await Promise.all(KEYS.map((k) => holder.acquire(k, { timeoutMs: 5_000 })));

    // As many threads as this process's pool, whose size the lock manager's budget is half of.
    const pool = new SlowThreadPool(libuvPoolSize(), 5);
    const waiter = new NodeLockManager({ root, conductorId: 'waiter', timings: FAST, fs: pool.fs });
    managers.push(waiter);
    const waits = KEYS.map((k) => waiter.acquire(k, { timeoutMs: 20_000 }));
    await sleep(400); // every wait has made its first look and polls now

    pool.watching = true;
    const ahead: number[] = [];
    for (let i = 0; i < 10; i++) {
      ahead.push(await pool.probe()); // a heartbeat's refresh, through the same pool
      await sleep(15);
    }
    pool.watching = false;
    expect(pool.maxQueued, 'calls in the pool at once while 30 waits polled').toBeLessThanOrEqual(
      pollBudgetSize() + 1,
    );
    expect(Math.max(...ahead), 'calls queued ahead of a heartbeat').toBe(0);

    await Promise.all(held.map((l) => l.release()));
    const got = await Promise.all(waits);
    expect(got.map((l) => l.key.imageId).sort()).toEqual(KEYS.map((k) => k.imageId).sort());
  });
});
