import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CacheRootCheck } from '../apps/conductor/src/index';
import { conductorTestbed } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { LoopbackSshfs, SSHFS_NO_CACHE } from './support/loopback-sshfs';
import { makeTempDir, removeDir } from './support/temp-dirs';

/**
 * The start-up check of CACHE_ROOT against real sshfs mounts of the cell's folder (an sshd of the test's
 * own on 127.0.0.1): sshfs's default caches show a change through a second path about 20 s late, which
 * would make live heartbeats look frozen to another host; with the caches off the change shows at once.
 */
describe('CACHE_ROOT start-up check on an sshfs mount', () => {
  const bed = conductorTestbed(['node-a', 'node-b']);
  let sshfs: LoopbackSshfs | undefined;
  let mounts: string | undefined;
  afterAll(async () => {
    await sshfs?.stop();
    if (mounts) await removeDir(mounts);
  });
  const mount = async (name: string, options: string[]) => {
    sshfs ??= await LoopbackSshfs.start();
    mounts ??= await makeTempDir('mounts');
    const at = path.join(mounts, name);
    await sshfs.mount(bed.cell!.root, at, options);
    return at;
  };

  it('refuses a mount with sshfs default caching: the conductor exits 78 naming the probe and the fix', async () => {
    const root = await mount('default-cache', []);
    const report = await new CacheRootCheck({
      root,
      conductorId: 'check',
      timings: { updateMs: 1000, safetyMarginMs: 500 },
    }).run();
    expect(report.failures.map((f) => f.probe)).toEqual(['visibility']);
    expect(report.mtimePrecisionMs).toBe(1000);

    const conductor = ConductorProcess.start(bed.pool, bed.cell!.conductorEnv({ CACHE_ROOT: root }), 60_000);
    const exit = await conductor.exited();
    const output = conductor.child.output.join('');
    expect(exit.code, output).toBe(78);
    expect(output).toContain(`CACHE_ROOT ${root} cannot support the lock timings safely`);
    expect(output).toMatch(/visibility: a change made through CACHE_ROOT did not show through a second path/);
    expect(output).toContain('attr_timeout=0');
    expect(output).not.toContain('conductor started');
    await sshfs!.unmount(root);
  });

  it('accepts the mount with the caches off: the conductor starts and serves a copy through it', async () => {
    const root = await mount('no-cache', SSHFS_NO_CACHE);
    const report = await new CacheRootCheck({
      root,
      conductorId: 'check',
      timings: { updateMs: 1000, safetyMarginMs: 500 },
    }).run();
    expect(report.failures).toEqual([]);
    expect(report.visibilityMs).toBeLessThan(500);

    const c = bed.cell!;
    const seeded = await c.seed('node-a', 'img.raw', 256 * 1024);
    const conductor = await ConductorProcess.start(
      bed.pool,
      c.conductorEnv({ CACHE_ROOT: root, CONDUCTOR_ID: 'on-sshfs' }),
      60_000,
    ).ready(30_000);
    const passed = conductor.logs().find((l) => l.msg === 'CACHE_ROOT check passed');
    expect(passed).toMatchObject({ mtimePrecisionMs: 1000 });
    const reply = await bed.client!.finalReply(
      bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: 'req-sshfs',
        imageId: 'img.raw',
        destination: 'node-b',
        sha256: seeded.sha256,
      }),
      30_000,
    );
    expect(reply).toMatchObject({ status: 'completed', sha256: seeded.sha256 });
    console.log(
      `cache-root-check: ${JSON.stringify({ noCacheVisibilityMs: report.visibilityMs, mtimePrecisionMs: report.mtimePrecisionMs })}`,
    );
    conductor.signal('SIGTERM');
    expect((await conductor.exited()).code).toBe(0);
    await sshfs!.unmount(root);
  });

  it('refuses an empty CACHE_ROOT, as a mount that is not there leaves one: exit 78, nothing written in it', async () => {
    const bare = await makeTempDir('bare-mount-point');
    try {
      const conductor = ConductorProcess.start(
        bed.pool,
        bed.cell!.conductorEnv({ CACHE_ROOT: bare }),
        60_000,
      );
      const exit = await conductor.exited();
      const output = conductor.child.output.join('');
      expect(exit.code, output).toBe(78);
      expect(output).toMatch(/cell-folder: CACHE_ROOT .* is empty/);
      expect(output).not.toContain('conductor started');
      // Before: a header key of its own, and the start-up check passed.
      expect(await fsp.readdir(bare)).toEqual([]);
    } finally {
      await removeDir(bare);
    }
  });
});
