import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { requireRoot } from '../hosts/host-network';
import { makeTempDir, removeDir } from '../temp-dirs';
import { CephfsCluster, type CephSessionTimings } from './cephfs-cluster';
import type { FsPlace, HostShare } from './fuse-clients';
import { GlusterVolume, type GlusterOptions } from './gluster-volume';

export type SharedFsKind = 'cephfs' | 'glusterfs';
export const SHARED_FS_KINDS: readonly SharedFsKind[] = ['cephfs', 'glusterfs'];

export interface SharedFsOptions {
  /** CephFS: session timings (`ceph fs set`). */
  ceph?: CephSessionTimings;
  /** GlusterFS: volume options set before the volume starts (e.g. performance.stat-prefetch off). */
  gluster?: GlusterOptions;
}

/** Starts a file system of `kind` whose servers live at `place` and whose state lives under `base`. */
export async function startSharedFs(
  kind: SharedFsKind,
  place: FsPlace,
  base: string,
  options: SharedFsOptions = {},
): Promise<CephfsCluster | GlusterVolume> {
  return kind === 'cephfs'
    ? CephfsCluster.start(place, base, options.ceph)
    : GlusterVolume.start(place, base, options.gluster);
}

/**
 * A loopback address of the bed's own (127.x.y.z, never 127.0.0.1): GlusterFS refuses localhost as a
 * brick host, and an address per bed keeps parallel beds' ports apart.
 */
export function loopbackPlace(): FsPlace {
  const b = randomBytes(3);
  return { serverAddress: `127.${1 + (b[0]! % 250)}.${b[1]!}.${2 + (b[2]! % 250)}`, launcher: () => [] };
}

/**
 * A shared file system on this machine without the multi-host bed: its servers on a loopback address,
 * one FUSE mount per named client (`mounts`: client name → its mount point, each a CACHE_ROOT of its own
 * view). `stop()` unmounts, ends every daemon and removes the folder; `leftovers()` says what would remain.
 */
export class SharedFsBed {
  private constructor(
    readonly kind: SharedFsKind,
    readonly base: string,
    readonly fs: CephfsCluster | GlusterVolume,
    readonly mounts: Map<string, string>,
  ) {}

  static async start(
    kind: SharedFsKind,
    clients: string[],
    options: SharedFsOptions = {},
  ): Promise<SharedFsBed> {
    requireRoot(`the ${kind} bed`);
    const base = await makeTempDir(`fs-${kind}`);
    let fs: CephfsCluster | GlusterVolume | undefined;
    try {
      fs = await startSharedFs(kind, loopbackPlace(), base, options);
      const mounts = new Map<string, string>();
      for (const client of clients) mounts.set(client, await fs.mount(client));
      return new SharedFsBed(kind, base, fs, mounts);
    } catch (error) {
      await fs?.stop().catch(() => undefined);
      await removeDir(base).catch(() => undefined);
      throw error;
    }
  }

  mount(client: string): string {
    const mount = this.mounts.get(client);
    if (!mount) throw new Error(`no mount for client ${client}`);
    return mount;
  }

  get share(): HostShare {
    return this.fs;
  }

  async stop(): Promise<void> {
    try {
      await this.fs.stop();
    } finally {
      await removeDir(this.base).catch(() => undefined);
    }
  }
}

/**
 * What a bed under `base` left behind: mounts below it (from /proc/self/mountinfo) and processes whose
 * command line names it (daemons, FUSE clients). Empty after a clean teardown.
 */
export async function sharedFsLeftovers(base: string): Promise<string[]> {
  const found: string[] = [];
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  for (const line of info.split('\n')) {
    const mountPoint = line.split(' ')[4];
    if (mountPoint?.startsWith(base)) found.push(`mount ${mountPoint}`);
  }
  for (const pid of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(base)) found.push(`process ${pid}: ${cmdline.split('\0').join(' ').trim()}`);
  }
  return found;
}
