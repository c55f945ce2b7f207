import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import { CacheRootCheck, describeRefusal, mountOf, nfsAttributeCacheMs } from './cache-root-check';

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
      'replace-while-open',
    ]);
    expect(report.mtimePrecisionMs).toBe(1);
    expect(report.visibilityMs).toBeLessThan(timings.safetyMarginMs);
    expect(await fsp.readdir(root)).toEqual([]);
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
    expect(await fsp.readdir(root)).toEqual(['.icc-check-starting-2-01020304']);
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
        detail: expect.stringContaining('caches attributes for up to 60000 ms'),
        fix: expect.stringContaining('noac'),
      }),
    ]);
    expect((await run('noac')).failures).toEqual([]);
    expect((await run('actimeo=3', 5000)).failures).toEqual([]);
    expect((await run('actimeo=3', 2000)).failures.map((f) => f.probe)).toEqual(['mount-options']);
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
