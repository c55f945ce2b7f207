import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LOCK_TIMINGS, type LockRequest } from '@app/locking';
import { type Child, ChildProcessPool, compiled } from './support/child-processes';
import type { CallTimes, LockWorkerConfig, LockWorkerReport } from './support/lock-worker';
import { SharedFsBed, sharedFsLeftovers } from './support/shared-fs/shared-fs-bed';

/**
 * Issue 24, item 3: 8 lock workers, 4 on each of two ceph-fuse mounts of one CephFS, contend for one key
 * with the default lock timings (a key folder shared by contending clients is CephFS's worst case: its
 * capabilities are handed between the clients). Errors (timeouts, lost locks, overlaps) must be 0; the
 * slowest seam calls and the hand-off gaps are printed (figures, not assertions).
 */
const TIMINGS = { ...DEFAULT_LOCK_TIMINGS };
const WORKERS = 8;

describe('lock races on CephFS, 8 processes on two mounts', () => {
  let bed: SharedFsBed;
  const pool = new ChildProcessPool<LockWorkerReport>();

  beforeAll(async () => {
    bed = await SharedFsBed.start('cephfs', ['hosta', 'hostb']);
  });
  afterEach(async () => {
    await pool.killAll();
  });
  afterAll(async () => {
    const base = bed?.base;
    await bed?.stop();
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

  it('fresh race: one key, 8 processes x 3 acquisitions, 0 lock errors', async () => {
    const key: LockRequest = { node: 'n1', imageId: 'img', mode: 'exclusive' };
    await fsp.mkdir(path.join(bed.mount('hosta'), 'fresh', 'critical-section'), { recursive: true });
    const children = workers('fresh', { requests: [key], iterations: 3 });
    await Promise.all(children.map((c) => c.waitFor((m) => m.type === 'done', 270_000)));
    // Hand-off: from one release to the next acquisition (one machine, one wall clock).
    const events = children
      .flatMap((c) => c.messages)
      .filter((m) => m.type === 'released' || m.type === 'acquired')
      .sort((a, b) => a.at! - b.at!);
    const gaps: number[] = [];
    for (let i = 1; i < events.length; i++)
      if (events[i - 1]!.type === 'released' && events[i]!.type === 'acquired')
        gaps.push(events[i]!.at! - events[i - 1]!.at!);
    gaps.sort((a, b) => a - b);
    const errors = errorsOf(children);
    console.log(
      `[cephfs fresh race] errors=${JSON.stringify(errors)} hand-off ms min/median/max=` +
        `${gaps[0]}/${gaps[Math.floor(gaps.length / 2)]}/${gaps[gaps.length - 1]} (n=${gaps.length}); ` +
        `slowest calls: ${slowest(children)}`,
    );
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
