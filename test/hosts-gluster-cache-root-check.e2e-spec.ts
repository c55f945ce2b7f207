import { afterEach, describe, expect, it } from 'vitest';
import { ImageStore } from '@app/image-store';
import { conductorTestbed } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { crossClientDelays, spread } from './support/shared-fs/cross-client-delay';
import { SharedFsBed } from './support/shared-fs/shared-fs-bed';
import { GLUSTER_NO_CLIENT_CACHE } from './support/shared-fs/gluster-volume';

/**
 * The start-up check against another client's view (issue 24, item 4), on a GlusterFS of the test's own
 * with two FUSE clients. With the defaults, another client's mtime change shows about 1 s late (md-cache,
 * and the FUSE client's attribute and entry timeouts: each alone gives the 1 s), which no probe through
 * one mount sees (a client's own changes invalidate its own caches): the check reads the client graph and
 * command line in force from the mount's `.meta` and refuses a margin that 1 s eats. With
 * performance.stat-prefetch off and the FUSE timeouts at 0 the conductor starts.
 */
describe('CACHE_ROOT start-up check on GlusterFS', () => {
  const bed = conductorTestbed(['node-a']);
  let fs: SharedFsBed | undefined;
  afterEach(async () => {
    await fs?.stop();
    fs = undefined;
  });

  // The volume as a cell's folder: a conductor refuses an empty CACHE_ROOT (the start-up check's cell-folder).
  const registerNode = () =>
    new ImageStore({ root: fs!.mount('a'), fsync: false }).markers.registerNode('node-a', 'test');

  const start = (conductorId: string) =>
    ConductorProcess.start(
      bed.pool,
      // LOCK_SAFETY_MARGIN_MS=500 (the test cell's timings): md-cache's 1 s eats it.
      bed.cell!.conductorEnv({ CACHE_ROOT: fs!.mount('a'), CONDUCTOR_ID: conductorId }),
      60_000,
    );

  it('refuses the default volume (exit 78, naming performance.stat-prefetch off): another client really sees changes ~1 s late', async () => {
    fs = await SharedFsBed.start('glusterfs', ['a', 'b']);
    const delays = await crossClientDelays(fs!.mount('a'), fs!.mount('b'), 5);
    console.log(`[gluster default] cross-client mtime delay ms ${JSON.stringify(spread(delays))}`);
    expect(spread(delays).p50).toBeGreaterThanOrEqual(500);
    await registerNode();

    const conductor = start('on-gluster-default');
    const exit = await conductor.exited();
    const output = conductor.child.output.join('');
    expect(exit.code, output).toBe(78);
    expect(output).toContain('mount-options: fuse.glusterfs at');
    expect(output).toContain('up to 1000 ms late (GlusterFS volume icc: md-cache');
    expect(output).toContain(
      'gluster volume set icc performance.stat-prefetch off; mount with -o attribute-timeout=0; mount with -o entry-timeout=0',
    );
    expect(output).not.toContain('conductor started');
  });

  it('accepts the volume with performance.stat-prefetch off and FUSE timeouts at 0, and shows what it measured on /status', async () => {
    fs = await SharedFsBed.start('glusterfs', ['a', 'b'], {
      gluster: {
        volumeOptions: { 'performance.stat-prefetch': 'off' },
        clientOptions: GLUSTER_NO_CLIENT_CACHE,
      },
    });
    const delays = await crossClientDelays(fs!.mount('a'), fs!.mount('b'), 5);
    console.log(`[gluster stat-prefetch off] cross-client mtime delay ms ${JSON.stringify(spread(delays))}`);
    expect(spread(delays).max).toBeLessThan(500);
    await registerNode();

    const conductor = await start('on-gluster-fixed').ready(30_000);
    const passed = conductor.logs().find((l) => l.msg === 'CACHE_ROOT check passed');
    expect(passed).toMatchObject({ attributeCacheMs: 0 });
    const status = (await (await fetch(`http://127.0.0.1:${conductor.adminPort()}/status`)).json()) as {
      cacheRootCheck: Record<string, unknown>;
    };
    expect(status.cacheRootCheck).toMatchObject({
      attributeCacheMs: 0,
      attributeCacheSource: 'GlusterFS volume icc: no client-side metadata cache',
      failed: [],
      visibilityMs: expect.any(Number),
    });
    conductor.signal('SIGTERM');
    expect((await conductor.exited()).code).toBe(0);
  });
});
