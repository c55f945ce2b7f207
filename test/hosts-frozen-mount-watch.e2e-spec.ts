import { spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type LockFileSystem, NodeLockManager, nodeLockFileSystem } from '@app/locking';
import { describe, expect, it } from 'vitest';
import { GLUSTER_NO_CLIENT_CACHE } from './support/shared-fs/gluster-volume';
import { bedPerTest } from './support/shared-fs/bed-per-test';
import { SharedFsBed } from './support/shared-fs/shared-fs-bed';

/** The FUSE client process serving `mount` (its command line names the mount point). */
async function clientPidOf(mount: string): Promise<number> {
  for (const pid of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(mount)) return Number(pid);
  }
  throw new Error(`no FUSE client process for ${mount}`);
}

/**
 * A lock acquisition on a mount that stopped answering must not freeze the conductor's main thread:
 * setting an inotify watch looks the key folder up synchronously, and on a frozen FUSE mount that call
 * waited until the mount answered again, so no heartbeat, hang watchdog or broker heartbeat ran (the
 * across-hosts campaign: "the conductor did not leave within 90 s"). Key folders on a network mount are
 * polled, never watched (StepFileSystem.watchable).
 */
describe('a lock acquisition on a frozen GlusterFS mount', () => {
  const made = bedPerTest<SharedFsBed>((bed) => bed.stop());

  it('leaves the main thread running while the mount is frozen', async () => {
    // Its FUSE client with no entry cache, as the start-up check demands: every lookup asks the client.
    const bed = (made.bed = await SharedFsBed.start('glusterfs', ['a'], {
      gluster: {
        volumeOptions: { 'performance.stat-prefetch': 'off' },
        clientOptions: GLUSTER_NO_CLIENT_CACHE,
      },
    }));
    const share = bed.share;
    const root = bed.mount('a');
    const keyDir = path.join(root, 'n1', 'locks', 'img');
    // The mount freezes right after the acquisition's first look at the key folder, before it would set
    // its watch there: the moment the campaign's conductor met by chance.
    let armed = false;
    const fs: LockFileSystem = {
      ...nodeLockFileSystem,
      stat: async (target) => {
        const stats = await nodeLockFileSystem.stat(target);
        if (armed && target === keyDir) {
          armed = false;
          share.freezeMount('a');
        }
        return stats;
      },
    };
    const manager = new NodeLockManager({ root, conductorId: 'c', timings: { pollMs: 20 }, fs });
    // A first acquisition of the key: its folder exists, and the manager learns the root is a network one.
    await (
      await manager.acquire({ node: 'n1', imageId: 'img', mode: 'exclusive' }, { timeoutMs: 10_000 })
    ).release();
    await new Promise((r) => setTimeout(r, 200));

    // A helper outside this process thaws the mount after a while and leaves a marker when it does: if
    // this process's main thread blocks on the mount, only the helper can end the freeze.
    const marker = path.join(await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-thaw-')), 'thawed');
    const pid = await clientPidOf(root);
    const helper = spawn('sh', ['-c', `sleep 4; kill -CONT ${pid}; touch ${marker}`], { stdio: 'ignore' });
    armed = true;
    const acquiring = manager
      .acquire({ node: 'n1', imageId: 'img', mode: 'exclusive' }, { timeoutMs: 30_000 })
      .then((lock) => lock.release())
      .catch((error: Error) => error);
    while (!share.isFrozen('a')) await new Promise((r) => setImmediate(r));
    const ranWhileFrozen = await new Promise<boolean>((resolve) =>
      setTimeout(() => resolve(!existsSync(marker)), 300),
    );
    await new Promise((r) => helper.on('exit', r));
    share.thawMount('a');
    await acquiring;
    await manager.releaseAll();
    await fsp.rm(path.dirname(marker), { recursive: true, force: true });
    expect(ranWhileFrozen, 'a timer due 300 ms into the freeze ran only after the mount was thawed').toBe(
      true,
    );
  });
});
