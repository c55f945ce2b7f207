import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { LockRequest } from '@app/locking';
import { ChildProcessPool, compiled } from './support/child-processes';
import type { LockWorkerConfig, LockWorkerReport } from './support/lock-worker';
import { waitFor } from './support/async';
import { makeTempDir, removeDir } from './support/temp-dirs';

/*
 * Clock skew between NFS clients, made real: holders run under libfaketime (Debian package faketime),
 * so the mtimes their heartbeats write lie hours in the past or the future.
 */
const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const TIMINGS = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const HOURS = 3_600_000;

describe('locks under clock skew (mtimes hours off)', () => {
  const pool = new ChildProcessPool<LockWorkerReport>();
  let root: string;

  beforeAll(() => {
    if (!existsSync(LIBFAKETIME))
      throw new Error(`${LIBFAKETIME} is missing: apt-get install -y faketime (.ci/run does it)`);
  });
  beforeEach(async () => {
    root = await makeTempDir('skew');
  });
  afterEach(async () => {
    await pool.killAll();
    await removeDir(root);
  });

  const worker = (imageId: string, overrides: Partial<LockWorkerConfig>, skew?: string) => {
    const requests: LockRequest[] = [{ node: 'n1', imageId, mode: 'exclusive' }];
    const config: LockWorkerConfig = {
      root,
      conductorId: `w${pool.all.length}`,
      scenario: 'mutex',
      requests,
      iterations: 1,
      steps: 1,
      holdMs: 0,
      timeoutMs: 30_000,
      timings: TIMINGS,
      ...overrides,
    };
    const env = skew ? { LD_PRELOAD: LIBFAKETIME, FAKETIME: skew, FAKETIME_DONT_FAKE_MONOTONIC: '1' } : {};
    return pool.fork(compiled('test/support/lock-worker.ts'), [JSON.stringify(config)], {
      hardTimeoutMs: 60_000,
      env,
    });
  };

  async function heartbeatMtime(imageId: string): Promise<number> {
    const keyDir = path.join(root, 'n1', 'locks', imageId);
    const gen = (await fsp.readdir(keyDir)).find((n) => /^g-\d+$/.test(n))!;
    const entry = (await fsp.readdir(path.join(keyDir, gen)))[0]!;
    return (await fsp.stat(path.join(keyDir, gen, entry))).mtimeMs;
  }

  it('never takes a lock from a live holder whose clock is hours behind or ahead', async () => {
    const releaseFile = path.join(root, 'release');
    const holders = [
      { imageId: 'behind', skew: '-3h', expectOffset: -3 * HOURS },
      { imageId: 'ahead', skew: '+3h', expectOffset: 3 * HOURS },
    ].map((h) => ({ ...h, child: worker(h.imageId, { scenario: 'hold', holdMs: 0, releaseFile }, h.skew) }));
    for (const h of holders) {
      await h.child.waitFor((m) => m.type === 'acquired');
      // The skew is real: once a refresh is written (the first entry's mtime is the kernel's), the
      // heartbeat's mtime is hours off our clock.
      await waitFor(
        async () => Math.abs((await heartbeatMtime(h.imageId)) - Date.now() - h.expectOffset) < 60_000,
        `a heartbeat of the ${h.imageId} holder written with its skewed clock`,
      );
    }
    // Waiters with a true clock give up after twice the stale time: the holders kept beating (they hold
    // until the waiters are done, however long the waiters took to start).
    const waiters = holders.map((h) => worker(h.imageId, { timeoutMs: TIMINGS.staleMs * 2 }));
    for (const w of waiters)
      expect(await w.waitFor((m) => m.type === 'done'), pool.report()).toMatchObject({
        acquisitions: 0,
        timeouts: 1,
      });
    await fsp.writeFile(releaseFile, '');
    for (const h of holders) {
      const done = await h.child.waitFor((m) => m.type === 'done');
      expect(done, pool.report()).toMatchObject({ acquisitions: 1, lost: 0 });
    }
  });

  it('takes over a dead holder whose last mtime lies hours in the future or the past', async () => {
    for (const [imageId, skew] of [
      ['future', '+3h'],
      ['past', '-3h'],
    ] as const) {
      const holder = worker(imageId, { scenario: 'hold', holdMs: 60_000 }, skew);
      await holder.waitFor((m) => m.type === 'acquired');
      holder.process.kill('SIGKILL');
      await holder.exited;
    }
    const waiters = ['future', 'past'].map((imageId) => worker(imageId, { timeoutMs: TIMINGS.staleMs * 5 }));
    for (const w of waiters) {
      expect(await w.waitFor((m) => m.type === 'done'), pool.report()).toMatchObject({
        acquisitions: 1,
        timeouts: 0,
      });
      expect(w.messages.find((m) => m.type === 'acquired')).toMatchObject({ tookOverStale: true });
    }
  });
});
