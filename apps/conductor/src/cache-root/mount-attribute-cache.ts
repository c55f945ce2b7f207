import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** One line of /proc/self/mountinfo, the parts the start-up check reads. */
export interface MountEntry {
  mountPoint: string;
  fsType: string;
  /** Per-mount and super-block options together. */
  options: string[];
}

/**
 * How late this client may show another client's change of a file's attributes (a heartbeat's mtime) or of
 * a folder's entries (a new generation): a cache one client cannot see through from its own mount, so
 * only the file system's configuration tells.
 */
export interface AttributeCache {
  ms: number;
  /** Where the figure comes from (mount options, the volume's client graph, or an assumed default). */
  source: string;
  /** What to change to bring it down. */
  fix: string;
}

/** The mount's cross-client attribute cache, when its file system has one this check knows; else undefined. */
export async function mountAttributeCache(mount: MountEntry): Promise<AttributeCache | undefined> {
  const nfsMs = nfsAttributeCacheMs(mount);
  if (nfsMs !== undefined)
    return {
      ms: nfsMs,
      source: `NFS mount options ${mount.options.join(',')}`,
      fix: 'mount CACHE_ROOT with noac (or actimeo=0), hard, NFS v4.1 or later',
    };
  if (mount.fsType === 'fuse.glusterfs') return glusterClientCache(mount.mountPoint);
  return undefined;
}

/** How long an NFS mount may show a file's attributes late, from its options; undefined when not NFS. */
export function nfsAttributeCacheMs(mount: MountEntry): number | undefined {
  if (mount.fsType !== 'nfs' && mount.fsType !== 'nfs4') return undefined;
  const option = (name: string) => {
    const found = mount.options.find((o) => o.startsWith(`${name}=`));
    return found === undefined ? undefined : Number(found.slice(name.length + 1));
  };
  if (mount.options.includes('noac')) return 0;
  const actimeo = option('actimeo');
  if (actimeo !== undefined) return actimeo * 1000;
  // The kernel's defaults when unset: acregmax 60 s, acdirmax 60 s.
  return Math.max(option('acregmax') ?? 60, option('acdirmax') ?? 60) * 1000;
}

/** The client-side translators that serve metadata from a cache, and the volume option that removes each. */
const GLUSTER_CACHE_XLATORS = [
  {
    type: 'performance/md-cache',
    name: 'md-cache',
    volumeOption: 'performance.stat-prefetch',
    timeoutOption: 'md-cache-timeout',
    defaultS: 1,
  },
  {
    type: 'performance/nl-cache',
    name: 'nl-cache',
    volumeOption: 'performance.nl-cache',
    timeoutOption: 'nl-cache-timeout',
    defaultS: 60,
  },
];

/**
 * GlusterFS's client-side caches. md-cache (in the graph while `performance.stat-prefetch` is on, the
 * default) serves stat and lookups for `md-cache-timeout` seconds (default 1); nl-cache
 * (`performance.nl-cache`) remembers that a name does not exist for `nl-cache-timeout` seconds (default
 * 60); and the FUSE client lets the kernel keep attributes and names for `attribute-timeout` and
 * `entry-timeout` seconds (default 1 each). On the test bed another client's mtime change showed p50 1 s
 * late with any one of them left on, 2 ms with all off. A client's own changes invalidate its own caches,
 * which is why no probe through one mount sees any of this. The mount's virtual `.meta` folder holds the
 * client graph in force (`graphs/active/volfile`) and the client's command line (`cmdline`); what cannot
 * be read is assumed at its default.
 */
async function glusterClientCache(mountPoint: string): Promise<AttributeCache> {
  const meta = path.join(mountPoint, '.meta');
  const read = (file: string) => fsp.readFile(path.join(meta, file), 'utf8').catch(() => undefined);
  const [volfile, cmdline] = [await read(path.join('graphs', 'active', 'volfile')), await read('cmdline')];
  const volumes = volfile === undefined ? undefined : parseVolfile(volfile);
  const name = volumes?.find((v) => v.options['volfile-key'])?.options['volfile-key'] ?? '<volume>';
  const caches: { ms: number; what: string; fix: string }[] = [];
  const seconds = (value: string | undefined, fallback: number) => {
    const n = Number(value ?? fallback);
    return Number.isFinite(n) && n >= 0 ? n : fallback;
  };
  if (volumes === undefined)
    caches.push({
      ms: 1000,
      what: "client graph unreadable: md-cache's default of 1 s assumed",
      fix: `gluster volume set ${name} performance.stat-prefetch off`,
    });
  for (const v of volumes ?? []) {
    const xlator = GLUSTER_CACHE_XLATORS.find((x) => x.type === v.type);
    if (!xlator) continue;
    const s = seconds(v.options[xlator.timeoutOption], xlator.defaultS);
    caches.push({
      ms: s * 1000,
      what: `${xlator.name} (${xlator.volumeOption} on) ${s} s`,
      fix: `gluster volume set ${name} ${xlator.volumeOption} off`,
    });
  }
  const args = (cmdline ?? '').split(/[\s\0]+/);
  const flag = (key: string) => args.find((a) => a.startsWith(`--${key}=`))?.slice(key.length + 3);
  for (const key of ['attribute-timeout', 'entry-timeout']) {
    const s = seconds(flag(key), 1);
    if (s > 0)
      caches.push({
        ms: s * 1000,
        what: `FUSE ${key} ${s} s${cmdline === undefined ? ' (client command line unreadable: default assumed)' : ''}`,
        fix: `mount with -o ${key}=0`,
      });
  }
  if (caches.length === 0)
    return { ms: 0, source: `GlusterFS volume ${name}: no client-side metadata cache`, fix: '' };
  return {
    ms: Math.max(...caches.map((c) => c.ms)),
    source: `GlusterFS volume ${name}: ${caches.map((c) => c.what).join('; ')}`,
    fix: `${caches.map((c) => c.fix).join('; ')} (or raise LOCK_SAFETY_MARGIN_MS, and LOCK_STALE_MS with it, above the cache time)`,
  };
}

interface VolfileVolume {
  name: string;
  type: string;
  options: Record<string, string>;
}

/** The `volume … end-volume` blocks of a GlusterFS volfile. */
export function parseVolfile(text: string): VolfileVolume[] {
  const volumes: VolfileVolume[] = [];
  let current: VolfileVolume | undefined;
  for (const raw of text.split('\n')) {
    const [word, key, ...rest] = raw.trim().split(/\s+/);
    if (word === 'volume' && key) current = { name: key, type: '', options: {} };
    else if (word === 'end-volume' && current) {
      volumes.push(current);
      current = undefined;
    } else if (current && word === 'type' && key) current.type = key;
    else if (current && word === 'option' && key) current.options[key] = rest.join(' ');
  }
  return volumes;
}

/**
 * Whether reads through this GlusterFS client may show another client's written bytes late, from its
 * command line in `.meta/cmdline`: without `--direct-io-mode=enable` its kernel page cache kept bytes of a
 * partial file read while another client wrote it, and showed them later in the published image (8 of 8
 * trials on the bed, 0 of 8 with it; docs/deployment.md). A text saying so, or undefined when the option
 * is there (or the mount is not GlusterFS).
 */
export async function glusterPageCache(mount: MountEntry): Promise<string | undefined> {
  if (mount.fsType !== 'fuse.glusterfs') return undefined;
  const cmdline = await fsp
    .readFile(path.join(mount.mountPoint, '.meta', 'cmdline'), 'utf8')
    .catch(() => undefined);
  if (cmdline?.split(/[\s\0]+/).includes('--direct-io-mode=enable')) return undefined;
  return `GlusterFS client at ${mount.mountPoint} ${cmdline === undefined ? '(command line unreadable) assumed ' : ''}without direct-io-mode=enable: a copy that reads copies in progress (SHARE_PIECES) through it can leave old bytes in its page cache, which readers here then see in the published image`;
}
