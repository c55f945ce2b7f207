import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeLockManager } from '@app/locking';
import { AdminHttp, metricValue } from './support/admin-http';
import { until } from './support/async';
import { ChildProcessPool, compiled } from './support/child-processes';
import { conductorPool, errorLines } from './support/conductor-harness';
import { heldLockEntries } from './support/cell-observers';
import { ConductorProcess } from './support/conductor-process';
import type { LockWorkerConfig, LockWorkerReport } from './support/lock-worker';
import { TestCell } from './support/test-cell';

const TIMINGS = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 25 };

interface LeftoversView {
  enabled: boolean;
  rounds: number;
  totals: { keysCollected: number; lockEntries: number; tmpFiles: number; busy: number };
  lastRound: { nodes: number; durationMs: number; fsOps: number } | null;
}

describe('the leftover sweep', () => {
  let cell: TestCell | undefined;
  let live: NodeLockManager | undefined;
  const workers = new ChildProcessPool<LockWorkerReport>();
  // The references are dropped here, after the clean-up: an afterEach of its own that dropped them ran
  // before this one (vitest runs after-hooks last registered first), so no cell of this file was ever
  // removed (its queues stayed on the broker, its folder on disk).
  const pool = conductorPool(async () => {
    try {
      await live?.releaseAll();
      await workers.killAll();
      await cell?.cleanup();
    } finally {
      cell = undefined;
      live = undefined;
    }
  });

  /** A process that takes one lock the way a conductor does, holds it, and is then SIGKILLed. */
  async function killedHolder(
    root: string,
    node: string,
    imageId: string,
    mode: 'shared' | 'exclusive',
  ): Promise<void> {
    const config: LockWorkerConfig = {
      root,
      conductorId: `dead-${mode}`,
      scenario: 'hold',
      requests: [{ node, imageId, mode }],
      iterations: 1,
      steps: 1,
      holdMs: 60_000,
      timeoutMs: 10_000,
      timings: TIMINGS,
    };
    const child = workers.fork(compiled('test/support/lock-worker.ts'), [JSON.stringify(config)], {
      hardTimeoutMs: 60_000,
    });
    await child.waitFor((m) => m.type === 'acquired');
    child.process.kill('SIGKILL');
    await child.exited;
  }

  const partFile = (node: string, imageId: string, tag: string) =>
    path.join(cell!.root, node, 'tmp', `${imageId}~${tag}.part`);

  it('collects the lock entries and partial files of dead attempts under each image lock, and leaves a live holder alone', async () => {
    cell = await TestCell.create({ nodes: ['node-a', 'node-b'] });
    const c = cell;
    await c.seed('node-a', 'read.img', 1024);
    // A destination holder killed right after it published: its gate stays unreleased.
    await c.seed('node-b', 'published.img', 1024);
    await killedHolder(c.root, 'node-b', 'published.img', 'exclusive');
    // A source reader killed mid-copy, and its meta refresh's partial file.
    await killedHolder(c.root, 'node-a', 'read.img', 'shared');
    await fsp.mkdir(path.join(c.root, 'node-a', 'tmp'), { recursive: true });
    await fsp.writeFile(partFile('node-a', 'read.img', 'meta-0f3c'), '{"v":1');
    // A live reader of another image, with a partial file of that image that must stay.
    await c.seed('node-a', 'busy.img', 1024);
    live = new NodeLockManager({ root: c.root, conductorId: 'alive', timings: TIMINGS });
    const held = await live.acquire(
      { node: 'node-a', imageId: 'busy.img', mode: 'shared' },
      { timeoutMs: 5_000 },
    );
    await fsp.writeFile(partFile('node-a', 'busy.img', 'meta-7a7a'), '{"v":1');
    expect(await heldLockEntries(c.root)).toHaveLength(3);

    const conductor = ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'sweeper', LEFTOVER_SWEEP_MS: '1000' }),
      90_000,
    );
    await conductor.ready();
    const admin = AdminHttp.of(conductor);
    const { leftovers } = await until(
      async () => {
        const status = await admin.json<{ leftovers: LeftoversView }>('/status');
        return status.leftovers.totals.keysCollected >= 2 && status;
      },
      'the sweep to collect both dead keys',
      30_000,
    );
    expect(leftovers.enabled).toBe(true);
    expect(leftovers.totals).toMatchObject({ keysCollected: 2, lockEntries: 2, tmpFiles: 1 });
    // Only the live reader's entry is left, and its partial file: nobody took its lock or touched its files.
    expect(await heldLockEntries(c.root)).toEqual([
      expect.stringMatching(/^node-a\/locks\/busy\.img\/r~alive~/),
    ]);
    expect(await held.isStillHeld()).toBe(true);
    await expect(fsp.stat(partFile('node-a', 'busy.img', 'meta-7a7a'))).resolves.toBeDefined();
    await expect(fsp.stat(partFile('node-a', 'read.img', 'meta-0f3c'))).rejects.toMatchObject({
      code: 'ENOENT',
    });
    // The images themselves are untouched.
    for (const [node, imageId] of [
      ['node-a', 'read.img'],
      ['node-b', 'published.img'],
      ['node-a', 'busy.img'],
    ] as const) {
      expect(await c.store.copies.verifiedImage(node, imageId), `${node}/${imageId}`).toBeDefined();
    }
    // The background load on the shared folder, per round kind: the last round's time and file-system calls.
    const status = await admin.json<{
      leftovers: LeftoversView;
      holderIndex: { lastScan: { nodes: number; fsOps: number; listed: number } | null };
    }>('/status');
    // A round lists the nodes, and each node's locks/ and tmp/ at least.
    expect(status.leftovers.lastRound!.fsOps).toBeGreaterThanOrEqual(1 + 2 * 2);
    // The index is built at start: a stat and a listing of CACHE_ROOT and of each node's images/ at first.
    expect(status.holderIndex.lastScan).toMatchObject({ nodes: 2 });
    expect(status.holderIndex.lastScan!.fsOps).toBeGreaterThanOrEqual(2 + 1);
    const metrics = (await admin.get('/metrics')).text;
    for (const round of ['leftover-sweep', 'holder-index']) {
      expect(metricValue(metrics, 'icc_background_round_fs_ops', { round }), round).toBeGreaterThan(0);
      expect(metricValue(metrics, 'icc_background_round_seconds', { round }), round).toBeGreaterThanOrEqual(
        0,
      );
    }
    expect(errorLines([conductor])).toEqual([]);
  });

  it("leaves a killed copy's resumable partial for RESUMABLE_KEEP_MS, then collects it too", async () => {
    cell = await TestCell.create({ nodes: ['node-a', 'node-b'] });
    const c = cell;
    // A destination holder killed mid-copy: its gate, a checkpointed partial with its record, and a
    // partial meta file that no later attempt resumes.
    await killedHolder(c.root, 'node-b', 'big.img', 'exclusive');
    await fsp.mkdir(path.join(c.root, 'node-b', 'tmp'), { recursive: true });
    const bytes = Buffer.alloc(4096, 7);
    await fsp.writeFile(partFile('node-b', 'big.img', 'dead-attempt'), bytes);
    const record = {
      v: 1,
      imageId: 'big.img',
      attemptId: 'dead-attempt',
      sha256: 'a'.repeat(64),
      size: 1 << 20,
      createdAt: new Date().toISOString(),
      verified: { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') },
    };
    await fsp.writeFile(partFile('node-b', 'big.img', 'dead-attempt.origin'), JSON.stringify(record));
    await fsp.writeFile(partFile('node-b', 'big.img', 'meta-1b2c'), '{"v":1');
    const tmpNames = () => fsp.readdir(path.join(c.root, 'node-b', 'tmp')).then((n) => n.sort());

    const conductor = ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'sweeper', LEFTOVER_SWEEP_MS: '1000', RESUMABLE_KEEP_MS: '8000' }),
      90_000,
    );
    await conductor.ready();
    const admin = AdminHttp.of(conductor);
    const totals = async () => (await admin.json<{ leftovers: LeftoversView }>('/status')).leftovers.totals;
    await until(async () => (await totals()).keysCollected >= 1, 'the sweep to collect the dead key', 30_000);
    // The gate and the meta partial are gone; the resumable pair stays for a later attempt.
    expect(await heldLockEntries(c.root)).toEqual([]);
    expect(await tmpNames()).toEqual(['big.img~dead-attempt.origin.part', 'big.img~dead-attempt.part']);

    await until(
      async () => (await tmpNames()).length === 0,
      'the resumable pair collected after its keep time',
      30_000,
    );
    // The round that removed them counts them in /status when it ends, a moment after the removal.
    await until(async () => (await totals()).tmpFiles >= 3, 'the round to count what it removed', 10_000);
    expect((await totals()).tmpFiles).toBe(3);
    expect(errorLines([conductor])).toEqual([]);
  });

  it('is off with LEFTOVER_SWEEP_MS=0: the leftovers stay', async () => {
    cell = await TestCell.create({ nodes: ['node-b'] });
    const c = cell;
    await c.seed('node-b', 'published.img', 1024);
    await killedHolder(c.root, 'node-b', 'published.img', 'exclusive');
    const conductor = ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'no-sweeper', LEFTOVER_SWEEP_MS: '0' }),
      60_000,
    );
    await conductor.ready();
    const { leftovers } = await AdminHttp.of(conductor).json<{ leftovers: LeftoversView }>('/status');
    expect(leftovers).toMatchObject({ enabled: false, rounds: 0, nextRoundAt: null });
  });
});
