import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CacheCleaner } from '@app/cache-cleaner';
import { ImageStore } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import { describeRun, runIcc } from './support/agent-cli';
import { LoopbackSshfs, SSHFS_NO_CACHE } from './support/loopback-sshfs';
import { makeTempDir, removeDir } from './support/temp-dirs';

const IMAGE = 'img.raw';
const HOUR_MS = 3_600_000;
const hidden = async (folder: string) =>
  (await fsp.readdir(folder)).filter((n) => n.startsWith('.fuse_hidden')).sort();

/**
 * Issue 18.1 on a real sshfs mount (caches off, no hard_remove): sshfs keeps a file that is replaced or
 * deleted while open on the same mount as `.fuse_hidden*`, and a mount that dies meanwhile leaves it on
 * the server for ever.
 */
describe('sshfs litter in images/', () => {
  let dir: string;
  let sshfs: LoopbackSshfs;
  let server: ImageStore;
  let mountPoint: string;
  beforeEach(async () => {
    dir = await makeTempDir('litter');
    sshfs = await LoopbackSshfs.start();
    const root = path.join(dir, 'export');
    await fsp.mkdir(root);
    server = new ImageStore({ root, fsync: false });
    await server.markers.registerNode('node-a', 'sshfs-litter');
    const seed = path.join(dir, 'seed');
    await fsp.writeFile(seed, Buffer.alloc(4096, 1));
    await server.imports.importImage('node-a', IMAGE, seed);
    mountPoint = path.join(dir, 'mnt');
    await sshfs.mount(root, mountPoint, SSHFS_NO_CACHE);
  });
  afterEach(async () => {
    await sshfs.stop();
    await removeDir(dir);
  });

  it('recording a last use while another copy has the meta open leaves no hidden file', async () => {
    const mounted = new ImageStore({ root: mountPoint, fsync: false });
    const images = mounted.nodeLayout('node-a').images;
    // Another copy on this host reading the source's meta (readJsonFile holds it open while it reads).
    // The image was made a minute ago: sshfs shows mtimes to the whole second, so a last use recorded in
    // the same second as the import could not be told from it.
    const metaPath = server.entries.metaPath('node-a', IMAGE);
    const minuteAgo = new Date(Date.now() - 60_000).toISOString();
    const made = JSON.parse(await fsp.readFile(metaPath, 'utf8')) as Record<string, unknown>;
    await fsp.writeFile(metaPath, JSON.stringify({ ...made, createdAt: minuteAgo, lastUsedAt: minuteAgo }));
    const reader = await fsp.open(mounted.entries.metaPath('node-a', IMAGE), 'r');
    try {
      await mounted.copies.touchLastUsed('node-a', IMAGE);
      expect(await hidden(images)).toEqual([]);
    } finally {
      await reader.close();
    }
    const { meta } = await server.entries.entry('node-a', IMAGE);
    expect(Date.parse(meta!.lastUsedAt)).toBeGreaterThan(Date.parse(meta!.createdAt));
  });

  it('hidden files a dead mount left are shown by icc cache ls and removed by the cleaner once old', async () => {
    const images = path.join(mountPoint, 'node-a', 'images');
    const meta = path.join(images, `${IMAGE}.meta.json`);
    const reader = await fsp.open(meta, 'r');
    // A replace while open (any writer's), then the mount dies before the reader closes.
    await fsp.copyFile(meta, path.join(images, 'replacement'));
    await fsp.rename(path.join(images, 'replacement'), meta);
    expect(await hidden(images)).toHaveLength(1);
    await sshfs.kill(mountPoint);
    await reader.close().catch(() => undefined);
    const serverImages = server.nodeLayout('node-a').images;
    const left = await hidden(serverImages);
    expect(left).toHaveLength(1);

    const ls = await runIcc(['cache', 'ls', 'node-a', '--cache-root', server.root]);
    expect(ls.code, describeRun(['cache', 'ls'], ls)).toBe(0);
    expect(ls.stdout).toContain('Hidden files a network mount left in images/');
    expect(ls.stdout).toContain(left[0]);
    const json = await runIcc(['cache', 'ls', 'node-a', '--cache-root', server.root, '--json']);
    expect((JSON.parse(json.stdout) as { litter: { name: string }[] }).litter.map((l) => l.name)).toEqual(
      left,
    );

    const locks = new NodeLockManager({
      root: server.root,
      conductorId: 'cleaner',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500, pollMs: 20 },
    });
    try {
      const cleaner = new CacheCleaner(server, locks, {}, { info: () => undefined, warn: () => undefined });
      expect((await cleaner.clean('node-a')).litterRemoved).toEqual([]);
      const later = await cleaner.clean('node-a', { now: () => Date.now() + 2 * HOUR_MS });
      expect(later.litterRemoved).toEqual(left);
      expect(later.deleted).toEqual([]);
      expect(await hidden(serverImages)).toEqual([]);
      expect((await server.entries.listEntries('node-a')).map((e) => e.imageId)).toEqual([IMAGE]);
    } finally {
      await locks.releaseAll();
    }
  });
});
