import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import { CacheRootCheck, describeRefusal } from './cache-root-check';
import { mountOf } from './cache-root-mount';
import { nfsAttributeCacheMs } from './mount-attribute-cache';

const timings = { updateMs: 1000, safetyMarginMs: 500 };

const NFS_LINE = (options: string) =>
  `36 25 0:32 / /srv/cache rw,relatime shared:12 - nfs4 filer:/export rw,vers=4.2,${options},addr=10.0.0.2`;
const MOUNT_INFO = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
  NFS_LINE('rsize=1048576,hard,proto=tcp'),
].join('\n');

describe('CacheRootCheck', () => {
  let root: string;
  beforeEach(async () => {
    root = await makeTempDir('cache-root-check');
    await fsp.mkdir(path.join(root, 'node-1')); // a cell's CACHE_ROOT holds its nodes' folders
  });
  afterEach(async () => {
    await removeDir(root);
  });

  it('passes on a local folder, measures what it probes, and leaves nothing behind', async () => {
    const report = await new CacheRootCheck({ root, timings, conductorId: 'c/1' }).run();
    expect(report.failures).toEqual([]);
    expect(report.results.map((r) => r.probe)).toEqual([
      'rename-and-fsync',
      'mtime-precision',
      'visibility',
      'mount-options',
      'page-cache',
      'replace-while-open',
    ]);
    expect(report.mtimePrecisionMs).toBe(1);
    expect(report.visibilityMs).toBeLessThan(timings.safetyMarginMs);
    expect(await fsp.readdir(root)).toEqual(['node-1']);
  });

  it('removes the probe folder of a check that died an hour ago, never one that may be under way', async () => {
    const abandoned = path.join(root, '.icc-check-dead-1-0a0b0c0d');
    const recent = path.join(root, '.icc-check-starting-2-01020304');
    await fsp.mkdir(path.join(abandoned, 'sub'), { recursive: true });
    await fsp.mkdir(recent);
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await fsp.utimes(abandoned, twoHoursAgo, twoHoursAgo);

    const report = await new CacheRootCheck({ root, timings, conductorId: 'c1' }).run();

    expect(report.failures).toEqual([]);
    expect((await fsp.readdir(root)).sort()).toEqual(['.icc-check-starting-2-01020304', 'node-1']);
  });

  it("keeps another conductor's fresh probe folder when this host's clock is hours ahead (judged on the file system's clock)", async () => {
    const underWay = path.join(root, '.icc-check-other-3-05060708');
    await fsp.mkdir(underWay);
    const realNow = Date.now;
    Date.now = () => realNow() + 3 * 60 * 60 * 1000;
    try {
      const report = await new CacheRootCheck({ root, timings, conductorId: 'ahead' }).run();
      expect(report.failures).toEqual([]);
    } finally {
      Date.now = realNow;
    }
    expect((await fsp.readdir(root)).sort()).toEqual(['.icc-check-other-3-05060708', 'node-1']);
  });

  it('refuses an empty CACHE_ROOT (a network mount not there leaves one), writing nothing in it', async () => {
    const bare = path.join(root, 'mount-point');
    await fsp.mkdir(bare);
    const report = await new CacheRootCheck({ root: bare, timings, conductorId: 'c1' }).run();
    expect(report.failures).toEqual([
      expect.objectContaining({ probe: 'cell-folder', ok: false, fix: expect.stringContaining('mount') }),
    ]);
    expect(await fsp.readdir(bare)).toEqual([]);
  });

  it('refuses a folder it cannot write, naming the probe and the fix', async () => {
    const missing = path.join(root, 'absent');
    const report = await new CacheRootCheck({ root: missing, timings, conductorId: 'c1' }).run();
    expect(report.failures).toEqual([
      expect.objectContaining({
        probe: 'rename-and-fsync',
        ok: false,
        fix: expect.stringContaining('writable'),
      }),
    ]);
    expect(describeRefusal(missing, report.failures)).toMatch(
      /^CACHE_ROOT .*absent cannot support the lock timings safely:\n {2}rename-and-fsync: cannot create a folder/,
    );
  });

  it('refuses an NFS mount with the default attribute cache, and accepts noac or a short actimeo', async () => {
    // The NFS line describes the test's own folder, so the other probes run on a real folder.
    const nfsAt = (options: string) =>
      `22 1 8:1 / / rw - ext4 /dev/sda1 rw\n36 25 0:32 / ${root} rw - nfs filer:/x rw,${options}`;
    const run = (options: string, safetyMarginMs = 500) =>
      new CacheRootCheck({
        root,
        timings: { updateMs: 1000, safetyMarginMs },
        conductorId: 'c1',
        mountInfo: () => Promise.resolve(nfsAt(options)),
      }).run();
    const byDefault = await run('hard,proto=tcp');
    expect(byDefault.failures).toEqual([
      expect.objectContaining({
        probe: 'mount-options',
        detail: expect.stringContaining("shows other clients' changes up to 60000 ms late"),
        fix: expect.stringContaining('noac'),
      }),
    ]);
    expect((await run('noac')).failures).toEqual([]);
    expect((await run('actimeo=3', 5000)).failures).toEqual([]);
    expect((await run('actimeo=3', 2000)).failures.map((f) => f.probe)).toEqual(['mount-options']);
  });

  it('refuses a GlusterFS mount with a client-side metadata cache the margin cannot absorb, naming each option; accepts it without', async () => {
    const volfile = (caches: string) =>
      [
        'volume cell-client-0',
        '    type protocol/client',
        '    option volfile-key cell',
        'end-volume',
        caches,
        'volume cell',
        '    type debug/io-stats',
        'end-volume',
      ].join('\n');
    const NO_FUSE_CACHE =
      'glusterfs --volfile-server=10.0.0.5 --attribute-timeout=0 --entry-timeout=0 /srv/cache';
    const run = async (graph: string | undefined, cmdline: string | undefined, safetyMarginMs = 500) => {
      const active = path.join(root, '.meta', 'graphs', 'active');
      await fsp.rm(path.join(root, '.meta'), { recursive: true, force: true });
      await fsp.mkdir(active, { recursive: true });
      if (graph !== undefined) await fsp.writeFile(path.join(active, 'volfile'), graph);
      if (cmdline !== undefined) await fsp.writeFile(path.join(root, '.meta', 'cmdline'), cmdline);
      return new CacheRootCheck({
        root,
        timings: { updateMs: 1000, safetyMarginMs },
        conductorId: 'c1',
        mountInfo: () =>
          Promise.resolve(
            `22 1 8:1 / / rw - ext4 /dev/sda1 rw\n40 22 0:50 / ${root} rw - fuse.glusterfs 10.0.0.5:cell rw`,
          ),
      }).run();
    };
    const mdCache = 'volume cell-md-cache\n    type performance/md-cache\nend-volume';
    const byDefault = await run(volfile(mdCache), 'glusterfs --volfile-server=10.0.0.5 /srv/cache');
    expect(byDefault.failures).toEqual([
      expect.objectContaining({
        probe: 'mount-options',
        detail: expect.stringContaining(
          'up to 1000 ms late (GlusterFS volume cell: md-cache (performance.stat-prefetch on) 1 s; FUSE attribute-timeout 1 s; FUSE entry-timeout 1 s)',
        ),
        fix: expect.stringContaining(
          'gluster volume set cell performance.stat-prefetch off; mount with -o attribute-timeout=0; mount with -o entry-timeout=0',
        ),
      }),
    ]);
    expect(byDefault).toMatchObject({ attributeCacheMs: 1000 });
    // Either cache alone is refused too (each was measured at ~1 s on the bed).
    expect((await run(volfile(mdCache), NO_FUSE_CACHE)).failures.map((f) => f.fix)).toEqual([
      expect.stringMatching(/^gluster volume set cell performance.stat-prefetch off \(/),
    ]);
    expect((await run(volfile(''), 'glusterfs --entry-timeout=0 x')).failures.map((f) => f.fix)).toEqual([
      expect.stringMatching(/^mount with -o attribute-timeout=0 \(/),
    ]);
    // The default margin (5 s) is not eaten by 1 s; a longer md-cache-timeout, or nl-cache's 60 s, is.
    expect((await run(volfile(mdCache), undefined, 5000)).failures).toEqual([]);
    const longer =
      'volume cell-md-cache\n    type performance/md-cache\n    option md-cache-timeout 10\nend-volume';
    expect((await run(volfile(longer), NO_FUSE_CACHE, 5000)).failures.map((f) => f.probe)).toEqual([
      'mount-options',
    ]);
    const nlCache = 'volume cell-nl-cache\n    type performance/nl-cache\nend-volume';
    expect((await run(volfile(nlCache), NO_FUSE_CACHE, 5000)).failures.map((f) => f.detail)).toEqual([
      expect.stringContaining('nl-cache (performance.nl-cache on) 60 s'),
    ]);
    const fixed = await run(volfile(''), NO_FUSE_CACHE);
    expect(fixed.failures).toEqual([]);
    // Advisory, never a refusal: the page cache of file data, which only copies in progress run into.
    expect(fixed.results.find((r) => r.probe === 'page-cache')).toMatchObject({
      ok: false,
      advisory: true,
      detail: expect.stringContaining('without direct-io-mode=enable'),
      fix: 'mount with -o direct-io-mode=enable',
    });
    const direct = await run(volfile(''), `${NO_FUSE_CACHE} --direct-io-mode=enable`);
    expect(direct.results.find((r) => r.probe === 'page-cache')).toMatchObject({ ok: true });
    expect(fixed).toMatchObject({
      attributeCacheMs: 0,
      attributeCacheSource: 'GlusterFS volume cell: no client-side metadata cache',
    });
    // What cannot be read is assumed at its default, never at nothing.
    expect((await run(undefined, NO_FUSE_CACHE)).failures.map((f) => f.detail)).toEqual([
      expect.stringContaining("md-cache's default of 1 s assumed"),
    ]);
    expect((await run(volfile(''), undefined)).failures.map((f) => f.detail)).toEqual([
      expect.stringContaining('FUSE attribute-timeout 1 s (client command line unreadable: default assumed)'),
    ]);
  });
});

describe('mountOf / nfsAttributeCacheMs', () => {
  it('finds the longest mount point holding the folder, and reads the NFS cache options', () => {
    const mount = mountOf(MOUNT_INFO, '/srv/cache/node-a')!;
    expect(mount).toMatchObject({ mountPoint: '/srv/cache', fsType: 'nfs4' });
    expect(nfsAttributeCacheMs(mount)).toBe(60_000);
    expect(mountOf(MOUNT_INFO, '/srv/cachex')).toMatchObject({ mountPoint: '/', fsType: 'ext4' });
    expect(nfsAttributeCacheMs(mountOf(MOUNT_INFO, '/srv/cachex')!)).toBeUndefined();
    expect(nfsAttributeCacheMs(mountOf(NFS_LINE('acregmax=2,acdirmax=3'), '/srv/cache')!)).toBe(3000);
    expect(nfsAttributeCacheMs(mountOf(NFS_LINE('actimeo=0'), '/srv/cache')!)).toBe(0);
  });
});
