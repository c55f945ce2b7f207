import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LOCK_TIMINGS, type LockRequest } from '@app/locking';
import { type Child, ChildProcessPool, compiled } from './support/child-processes';
import { describeHandOff, handOffs, quantile } from './support/lock-handoff-gaps';
import type { CallTimes, LockWorkerConfig, LockWorkerReport } from './support/lock-worker';
import { makeTempDir, removeDir } from './support/temp-dirs';
import { SharedFsBed, sharedFsLeftovers } from './support/shared-fs/shared-fs-bed';

/**
 * Issue 24, item 3: 8 lock workers, 4 on each of two ceph-fuse mounts of one CephFS, contend for one key
 * with the default lock timings (a key folder shared by contending clients is CephFS's worst case: its
 * capabilities are handed between the clients). Errors (timeouts, lost locks, overlaps) must be 0; the
 * slowest seam calls and the hand-off gaps are printed, and the hand-off p90 is held to issue 24's
 * target (a timing bound: this file runs only in `npm run campaign`, never in `npm test`).
 */
const TIMINGS = { ...DEFAULT_LOCK_TIMINGS };
const WORKERS = 8;
/** "Hand-off stays within a few LOCK_POLL_MS" (issue 24, item 3): p90 at most five poll intervals. */
const HANDOFF_P90_BOUND_MS = 5 * TIMINGS.pollMs;
/** Acquisitions per worker in the fresh race: 39 hand-offs, enough for a p90 that one stall cannot decide. */
const ITERATIONS = 5;

describe('lock races on CephFS, 8 processes on two mounts', () => {
  let bed: SharedFsBed;
  /** Each worker's trace of its seam calls (a local folder: the traces are not part of the race). */
  let traces: string;
  const pool = new ChildProcessPool<LockWorkerReport>();

  beforeAll(async () => {
    traces = await makeTempDir('cephfs-lock-traces');
    bed = await SharedFsBed.start('cephfs', ['hosta', 'hostb']);
  });
  afterEach(async () => {
    await pool.killAll();
  });
  afterAll(async () => {
    const base = bed?.base;
    await bed?.stop();
    if (traces) await removeDir(traces);
    if (base) expect(await sharedFsLeftovers(base)).toEqual([]);
  });

  const workers = (run: string, overrides: Partial<LockWorkerConfig> & Pick<LockWorkerConfig, 'requests'>) =>
    Array.from({ length: WORKERS }, (_, i) => {
      const root = path.join(bed.mount(i % 2 === 0 ? 'hosta' : 'hostb'), run);
      const config: LockWorkerConfig = {
        root,
        conductorId: `w${i}`,
        scenario: 'mutex',
        iterations: 1,
        steps: 1,
        holdMs: 10,
        timeoutMs: 60_000,
        timings: TIMINGS,
        csDir: path.join(root, 'critical-section'),
        timeCalls: true,
        traceFile: path.join(traces, `${run}-w${i}.json`),
        ...overrides,
      };
      return pool.fork(compiled('test/support/lock-worker.ts'), [JSON.stringify(config)], {
        hardTimeoutMs: 280_000,
      });
    });

  const errorsOf = (children: Array<Child<LockWorkerReport>>) => {
    const messages = children.flatMap((c) => c.messages);
    return {
      timeouts: messages.filter((m) => m.type === 'timeout').length,
      lost: messages.filter((m) => m.type === 'lost').length,
      overlaps: messages.filter((m) => m.type === 'overlap' && m.kind === 'real').length,
    };
  };

  const slowest = (children: Array<Child<LockWorkerReport>>) => {
    const merged: CallTimes = {};
    for (const m of children.flatMap((c) => c.messages)) {
      if (m.type !== 'done' || !m.calls) continue;
      for (const [kind, t] of Object.entries(m.calls)) {
        const was = merged[kind] ?? { calls: 0, maxMs: 0, p99Ms: 0 };
        merged[kind] = {
          calls: was.calls + t.calls,
          maxMs: Math.max(was.maxMs, t.maxMs),
          p99Ms: Math.max(was.p99Ms, t.p99Ms),
        };
      }
    }
    return Object.entries(merged)
      .map(([kind, t]) => `${kind} n=${t.calls} p99<=${t.p99Ms} max=${t.maxMs}`)
      .join(', ');
  };

  it('fresh race: one key, 8 processes x 5 acquisitions, 0 lock errors, hand-off p90 within 5 polls', async () => {
    const key: LockRequest = { node: 'n1', imageId: 'img', mode: 'exclusive' };
    await fsp.mkdir(path.join(bed.mount('hosta'), 'fresh', 'critical-section'), { recursive: true });
    const children = workers('fresh', { requests: [key], iterations: ITERATIONS });
    await Promise.all(children.map((c) => c.waitFor((m) => m.type === 'done', 270_000)));
    // Hand-off: from one release to the next acquisition (one machine, one wall clock).
    const gaps = handOffs(children.flatMap((c) => c.messages));
    const ms = gaps.map((g) => g.ms);
    const traceOf = (pid: number) =>
      path.join(traces, `fresh-w${children.findIndex((c) => c.pid === pid)}.json`);
    const slowestGaps = await Promise.all(gaps.slice(-3).map((g) => describeHandOff(g, traceOf)));
    const errors = errorsOf(children);
    console.log(
      `[cephfs fresh race] errors=${JSON.stringify(errors)} hand-off ms min/p50/p90/max=` +
        `${ms[0]}/${quantile(ms, 0.5)}/${quantile(ms, 0.9)}/${ms[ms.length - 1]} (n=${ms.length}); ` +
        `slowest calls: ${slowest(children)}\nslowest hand-offs, the two workers' calls meanwhile:\n  ` +
        slowestGaps.join('\n  '),
    );
    expect(errors, pool.report()).toEqual({ timeouts: 0, lost: 0, overlaps: 0 });
    expect(ms).toHaveLength(WORKERS * ITERATIONS - 1);
    // Issue 24's target: a released lock is handed over within a few poll intervals, on CephFS too.
    expect(quantile(ms, 0.9), 'hand-off p90 (ms)').toBeLessThanOrEqual(HANDOFF_P90_BOUND_MS);
    expect(errors, pool.report()).toEqual({ timeouts: 0, lost: 0, overlaps: 0 });
  });

  it('stale race: 12 keys left by a dead holder, 8 processes take each over once, 0 lock errors', async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `img-${i}`);
    const root = path.join(bed.mount('hosta'), 'stale');
    for (const imageId of keys) {
      const keyDir = path.join(root, 'n1', 'locks', imageId);
      await fsp.mkdir(path.join(keyDir, 'g-41', 'h~dead~x'), { recursive: true });
      await fsp.mkdir(path.join(keyDir, 'epoch'));
      await fsp.utimes(path.join(keyDir, 'epoch'), 41e-6, 41e-6);
    }
    await fsp.mkdir(path.join(root, 'critical-section'), { recursive: true });
    const goFile = path.join(root, 'go');
    const requests = keys.map((imageId) => ({ node: 'n1', imageId, mode: 'exclusive' as const }));
    const children = workers('stale', { scenario: 'race-once', requests, steps: 2, holdMs: 5, goFile });
    await Promise.all(children.map((c) => c.waitFor((m) => m.type === 'ready')));
    await fsp.writeFile(goFile, '');
    await Promise.all(children.map((c) => c.waitFor((m) => m.type === 'done', 270_000)));
    const acquired = children.flatMap((c) => c.messages).filter((m) => m.type === 'acquired');
    const errors = errorsOf(children);
    console.log(
      `[cephfs stale race] errors=${JSON.stringify(errors)} acquisitions=${acquired.length} ` +
        `takeovers=${acquired.filter((m) => m.type === 'acquired' && m.tookOverStale).length}; ` +
        `slowest calls: ${slowest(children)}`,
    );
    expect(errors, pool.report()).toEqual({ timeouts: 0, lost: 0, overlaps: 0 });
    expect(acquired).toHaveLength(WORKERS * keys.length);
  });
});
