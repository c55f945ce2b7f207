import * as path from 'node:path';
import { conductorTestbed } from './conductor-harness';
import { LoopbackSshfs, SSHFS_NO_CACHE } from './loopback-sshfs';
import { makeTempDir, removeDir } from './temp-dirs';

/**
 * A conductor test bed whose cell is also seen through a loopback sshfs mount (no caching), for tests of a
 * conductor whose CACHE_ROOT is a network mount that dies or hangs. The mount and its sshd are taken down
 * after each test, before the cell.
 */
export function sshfsTestbed(nodes: string[], tempName: string) {
  const state: { sshfs?: LoopbackSshfs; mounts?: string } = {};
  const bed = conductorTestbed(nodes, {
    cleanup: async () => {
      await state.sshfs?.stop();
      await removeDir(state.mounts);
      state.sshfs = undefined;
      state.mounts = undefined;
    },
  });
  return {
    bed,
    /** Starts the sshd and mounts the cell's root; the mount point is the conductor's CACHE_ROOT. */
    async mountCellRoot(): Promise<{ sshfs: LoopbackSshfs; mnt: string }> {
      const sshfs = (state.sshfs = await LoopbackSshfs.start());
      state.mounts = await makeTempDir(tempName);
      const mnt = path.join(state.mounts, 'cache');
      await sshfs.mount(bed.cell!.root, mnt, SSHFS_NO_CACHE);
      return { sshfs, mnt };
    },
  };
}
