/*
 * `npm run bench:cell-scale:sshfs` (as root): bench/cell-scale.ts over a loopback sshfs mount with caches
 * off, beside the local disk. The mounts are test/support's (bench/ uses no test code), as with
 * `npm run bench:hosts`.
 */
import { promises as fsp } from 'node:fs';
import { runCellScale } from '../../bench/cell-scale';
import { LoopbackSshfs, SSHFS_NO_CACHE } from './loopback-sshfs';

async function main(): Promise<void> {
  const sshfs = await LoopbackSshfs.start();
  try {
    await runCellScale({
      name: 'sshfs',
      mount: async (root) => {
        const mountPoint = `${root}-mnt`;
        await fsp.mkdir(mountPoint);
        await sshfs.mount(root, mountPoint, SSHFS_NO_CACHE);
        return {
          mountPoint,
          unmount: async () => {
            await sshfs.unmount(mountPoint).catch(() => undefined);
            await fsp.rm(mountPoint, { recursive: true, force: true });
          },
        };
      },
    });
  } finally {
    await sshfs.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
