import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type LockFileSystem, nodeLockFileSystem } from '@app/locking';
import { heldLockEntries, sweepKeys } from './support/cell-observers';
import { ChildProcessPool, compiled } from './support/child-processes';
import type { LockWorkerConfig, LockWorkerReport } from './support/lock-worker';

/** The campaigns' lock timings (TestCell.conductorEnv's fast ones): a holder trusts its lock for 1.5 s. */
const TIMINGS = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 25 };

/** Blocks this process's only thread: no timer, no I/O callback, no heartbeat refresh runs meanwhile. */
function stallThread(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe("the campaigns' last round (sweepKeys)", () => {
  const workers = new ChildProcessPool<LockWorkerReport>();
  let root: string | undefined;
  afterEach(async () => {
    await workers.killAll();
    if (root) await fsp.rm(root, { recursive: true, force: true });
    root = undefined;
  });

  it('takes a key again when its own heartbeat gapped past the trust window while it waited for a dead reader', async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-last-round-'));
    const key = { node: 'node-a', imageId: 'img.qcow2' };
    await fsp.mkdir(path.join(root, key.node));
    // A reader killed mid-copy: its entry stays until a gate holder has seen it frozen for the stale time.
    const config: LockWorkerConfig = {
      root,
      conductorId: 'dead-reader',
      scenario: 'hold',
      requests: [{ ...key, mode: 'shared' }],
      iterations: 1,
      steps: 1,
      holdMs: 60_000,
      timeoutMs: 10_000,
      timings: TIMINGS,
    };
    const reader = workers.fork(compiled('test/support/lock-worker.ts'), [JSON.stringify(config)], {
      hardTimeoutMs: 60_000,
    });
    await reader.waitFor((m) => m.type === 'acquired');
    reader.process.kill('SIGKILL');
    await reader.exited;

    // The first look at the dead reader's entry happens while the sweeper holds the gate: there this
    // process stalls past its own heartbeat's trust window, as a loaded machine once made the chaos
    // campaign's test process do (its lock is then lost for good, LOCK_LOST, like a conductor's).
    let stalls = 0;
    const stallingFs: LockFileSystem = {
      ...nodeLockFileSystem,
      stat: (target) => {
        if (stalls === 0 && path.basename(target).startsWith('r~')) {
          stalls++;
          stallThread(TIMINGS.staleMs - TIMINGS.safetyMarginMs + 300);
        }
        return nodeLockFileSystem.stat(target);
      },
    };
    const sweep = await sweepKeys(root, [key], TIMINGS, stallingFs);

    expect(stalls).toBe(1);
    expect(sweep).toMatchObject({ keys: 1, lostAndRetried: 1 });
    expect(await heldLockEntries(root)).toEqual([]);
  });
});
