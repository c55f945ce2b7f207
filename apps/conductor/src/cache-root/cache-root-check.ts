import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { errorText } from '@app/contracts';
import { LITTER_PREFIXES, isEmptyFolder } from '@app/image-store';
import { cacheRootMount, mountOf } from './cache-root-mount';
import { glusterPageCache, mountAttributeCache } from './mount-attribute-cache';

/** The lock timings the shared folder must support (see docs/locking.md). */
export interface CheckedTimings {
  updateMs: number;
  safetyMarginMs: number;
}

export interface ProbeResult {
  probe:
    | 'cell-folder'
    | 'rename-and-fsync'
    | 'mtime-precision'
    | 'visibility'
    | 'mount-options'
    | 'page-cache'
    | 'replace-while-open';
  ok: boolean;
  /** What was measured or found. */
  detail: string;
  /** What to change, when not ok. */
  fix?: string;
  /** A problem that wastes space but is not unsafe: reported, never a reason to refuse. */
  advisory?: boolean;
}

export interface CacheRootReport {
  results: ProbeResult[];
  /** The probes that make running unsafe (not advisory). */
  failures: ProbeResult[];
  /** Measured: how long a change took to show through a second path (a hard link), when it could be probed. */
  visibilityMs?: number;
  /** Measured: the mtime granularity in ms (1 or 1000 in practice). */
  mtimePrecisionMs?: number;
  /**
   * How late another client's change may show here, by the file system's configuration (a cache no probe
   * through one mount can see), when it has one the check knows; and where that figure comes from.
   */
  attributeCacheMs?: number;
  attributeCacheSource?: string;
}

/** What GET /status shows of the start-up check (null where nothing was measured or configured). */
export interface CacheRootCheckView {
  /** A change seen through a second path of this mount after this long. */
  visibilityMs: number | null;
  mtimePrecisionMs: number | null;
  /** Other clients' changes show up to this late by the file system's configuration, and why. */
  attributeCacheMs: number | null;
  attributeCacheSource: string | null;
  /** Probes that failed (non-empty only when CACHE_ROOT_CHECK=warn let the conductor start anyway). */
  failed: string[];
}

export function cacheRootCheckView(report: CacheRootReport): CacheRootCheckView {
  return {
    visibilityMs: report.visibilityMs ?? null,
    mtimePrecisionMs: report.mtimePrecisionMs ?? null,
    attributeCacheMs: report.attributeCacheMs ?? null,
    attributeCacheSource: report.attributeCacheSource ?? null,
    failed: report.failures.map((f) => f.probe),
  };
}

export interface CacheRootCheckOptions {
  root: string;
  timings: CheckedTimings;
  /** Names the probe folder, so two conductors starting at once never share one. */
  conductorId: string;
  /** /proc/self/mountinfo's text (a seam for the spec); read from the system by default. */
  mountInfo?: () => Promise<string>;
}

const POLL_MS = 20;
const PROBE_PREFIX = '.icc-check-';
/**
 * A check takes seconds: a probe folder this old is one a conductor left when it died mid-check. Another
 * conductor's check under way is never that old, so removing it cannot disturb one.
 */
const ABANDONED_PROBE_MS = 60 * 60 * 1000;

/**
 * The start-up check of CACHE_ROOT: can the folder support the lock timings? A conductor on a folder that
 * shows another client's heartbeat late (attribute caching), keeps mtimes too coarsely, or cannot rename
 * and fsync, would take live locks over or publish without durability; it must refuse to start instead.
 * Works in a probe folder of its own in CACHE_ROOT (a dot name, never a node) and removes it.
 */
export class CacheRootCheck {
  constructor(private readonly options: CacheRootCheckOptions) {}

  async run(): Promise<CacheRootReport> {
    const { root, conductorId } = this.options;
    const dir = path.join(
      root,
      `${PROBE_PREFIX}${conductorId.replace(/[^A-Za-z0-9._-]/g, '_')}-${randomBytes(4).toString('hex')}`,
    );
    const results: ProbeResult[] = [];
    const report: CacheRootReport = { results, failures: [] };
    // An empty CACHE_ROOT is what a network mount that is not there leaves: a conductor started on it
    // would make its own header key and records where no other host sees them (makeCellFolder).
    if (await isEmptyFolder(root).catch(() => false)) {
      results.push({
        probe: 'cell-folder',
        ok: false,
        detail: `CACHE_ROOT ${root} is empty: no registered node, no header key (the cell's shared folder is not mounted there?)`,
        fix: 'mount the shared folder at CACHE_ROOT; for a new cell, register its nodes first (icc node add <node>)',
      });
      report.failures = results;
      return report;
    }
    try {
      await fsp.mkdir(dir);
    } catch (error) {
      results.push({
        probe: 'rename-and-fsync',
        ok: false,
        detail: `cannot create a folder in CACHE_ROOT ${root}: ${errorText(error)}`,
        fix: 'CACHE_ROOT must exist and be writable by the conductor',
      });
      report.failures = results;
      return report;
    }
    try {
      await removeAbandonedProbes(root, dir);
      results.push(await this.renameAndFsync(dir));
      const precision = await this.mtimePrecision(dir);
      report.mtimePrecisionMs = precision.ms;
      results.push(precision.result);
      const visibility = await this.visibility(dir, precision.ms ?? 1000);
      report.visibilityMs = visibility.ms;
      results.push(visibility.result);
      results.push(await this.mountOptions(report));
      results.push(await this.pageCache());
      results.push(await this.replaceWhileOpen(dir));
    } finally {
      await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
    report.failures = results.filter((r) => !r.ok && !r.advisory);
    return report;
  }

  private async renameAndFsync(dir: string): Promise<ProbeResult> {
    const probe = 'rename-and-fsync';
    try {
      const target = path.join(dir, 'target');
      await writeSynced(target, 'old');
      await writeSynced(path.join(dir, 'replacement'), 'new');
      await fsp.rename(path.join(dir, 'replacement'), target);
      const folder = await fsp.open(dir, 'r');
      try {
        await folder.sync();
      } finally {
        await folder.close();
      }
      const read = await fsp.readFile(target, 'utf8');
      if (read !== 'new')
        return {
          probe,
          ok: false,
          detail: `after a rename over a file, reading it gave ${JSON.stringify(read)}, not the new content`,
          fix: 'use a file system with atomic rename (NFS, CephFS, GlusterFS, a local file system)',
        };
      return { probe, ok: true, detail: 'write, fsync of file and folder, rename over a file: all work' };
    } catch (error) {
      return {
        probe,
        ok: false,
        detail: `write, fsync or rename failed: ${errorText(error)}`,
        fix: 'CACHE_ROOT must support fsync of files and folders and rename over an existing file',
      };
    }
  }

  private async mtimePrecision(dir: string): Promise<{ ms?: number; result: ProbeResult }> {
    const probe = 'mtime-precision';
    const file = path.join(dir, 'mtime');
    await fsp.writeFile(file, '');
    // A time with 123 ms: a folder keeping milliseconds returns it, one keeping seconds drops the fraction.
    const wanted = Math.floor(Date.now() / 10_000) * 10_000 + 3_123;
    await fsp.utimes(file, wanted / 1000, wanted / 1000);
    const got = (await fsp.stat(file)).mtimeMs;
    const ms =
      Math.abs(got - wanted) < 1 ? 1 : got % 1000 === 0 && Math.abs(got - wanted) < 1000 ? 1000 : undefined;
    const { updateMs } = this.options.timings;
    if (ms === undefined)
      return {
        result: {
          probe,
          ok: false,
          detail: `an mtime set to ${wanted} ms reads back as ${got} ms: coarser than a second`,
          fix: 'use a file system keeping mtimes to the second or better (heartbeats refresh the mtime)',
        },
      };
    // Beats at least that far apart always change the mtime a waiter watches.
    if (ms > updateMs)
      return {
        ms,
        result: {
          probe,
          ok: false,
          detail: `mtimes are kept to ${ms} ms, too coarse for heartbeats every LOCK_UPDATE_MS=${updateMs}`,
          fix: `raise LOCK_UPDATE_MS to at least ${ms}`,
        },
      };
    return { ms, result: { probe, ok: true, detail: `mtimes are kept to ${ms} ms` } };
  }

  /**
   * A waiter judges a heartbeat by its mtime as its own mount shows it. A change made through one path must
   * show through another before LOCK_SAFETY_MARGIN_MS passes: otherwise a live holder can look frozen for
   * LOCK_STALE_MS and be taken over while it still trusts its lock. The second path is a hard link: sshfs
   * and other FUSE mounts cache attributes per path, so a link's stale attributes show what another mount
   * would see. (NFS caches per file, so a link shares the cache there: the mount options tell that.)
   */
  private async visibility(dir: string, precisionMs: number): Promise<{ ms?: number; result: ProbeResult }> {
    const probe = 'visibility';
    const { safetyMarginMs } = this.options.timings;
    const file = path.join(dir, 'seen');
    const link = path.join(dir, 'seen.link');
    await fsp.writeFile(file, '');
    try {
      await fsp.link(file, link);
    } catch (error) {
      return {
        result: {
          probe,
          ok: true,
          detail: `not probed: hard links are not supported here (${errorText(error)}); the mount options decide`,
        },
      };
    }
    const before = (await fsp.stat(link)).mtimeMs; // fills whatever cache the second path has
    const changed = Math.floor(before / 1000) * 1000 + 7_000;
    const started = performance.now();
    await fsp.utimes(file, changed / 1000, changed / 1000);
    for (;;) {
      const seen = (await fsp.stat(link)).mtimeMs;
      const elapsed = Math.round(performance.now() - started);
      if (Math.abs(seen - changed) < precisionMs)
        return {
          ms: elapsed,
          result: { probe, ok: true, detail: `a change showed through a second path after ${elapsed} ms` },
        };
      if (elapsed >= safetyMarginMs)
        return {
          result: {
            probe,
            ok: false,
            detail: `a change made through CACHE_ROOT did not show through a second path within LOCK_SAFETY_MARGIN_MS=${safetyMarginMs} ms (attribute caching): another conductor would see live heartbeats late`,
            fix: 'mount without attribute caching (sshfs: -o dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0; NFS: noac or actimeo=0), or raise LOCK_SAFETY_MARGIN_MS (and LOCK_STALE_MS with it) above the cache time',
          },
        };
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /**
   * Caches a second path in this mount cannot reveal: another client's change shows late by what its
   * configuration says (NFS: acregmax/acdirmax from the mount options; GlusterFS: md-cache and nl-cache in
   * the volume's client graph). The figure goes into the report and the log either way.
   */
  private async mountOptions(report: CacheRootReport): Promise<ProbeResult> {
    const probe = 'mount-options';
    let info: string;
    try {
      info = await (this.options.mountInfo ?? (() => fsp.readFile('/proc/self/mountinfo', 'utf8')))();
    } catch {
      return { probe, ok: true, detail: 'not probed: no /proc/self/mountinfo' };
    }
    const root = await fsp.realpath(this.options.root).catch(() => this.options.root);
    const mount = mountOf(info, root);
    if (!mount) return { probe, ok: true, detail: 'not probed: the mount of CACHE_ROOT was not found' };
    const cache = await mountAttributeCache(mount);
    if (cache === undefined)
      return {
        probe,
        ok: true,
        detail: `${mount.fsType} at ${mount.mountPoint}: no cross-client attribute cache this check knows of`,
      };
    report.attributeCacheMs = cache.ms;
    report.attributeCacheSource = cache.source;
    const { safetyMarginMs } = this.options.timings;
    if (cache.ms >= safetyMarginMs)
      return {
        probe,
        ok: false,
        detail: `${mount.fsType} at ${mount.mountPoint} shows other clients' changes up to ${cache.ms} ms late (${cache.source}), not below LOCK_SAFETY_MARGIN_MS=${safetyMarginMs}`,
        fix: cache.fix,
      };
    return {
      probe,
      ok: true,
      detail: `${mount.fsType} at ${mount.mountPoint}: other clients' changes show up to ${cache.ms} ms late (${cache.source})`,
    };
  }

  /** Advisory: a client whose page cache may show other clients' written bytes late (GlusterFS). */
  private async pageCache(): Promise<ProbeResult> {
    const probe = 'page-cache';
    const mount = await cacheRootMount(this.options.root, this.options.mountInfo);
    const problem = mount && (await glusterPageCache(mount));
    if (problem === undefined)
      return { probe, ok: true, detail: 'no page cache of file data this check knows to be incoherent' };
    return { probe, ok: false, advisory: true, detail: problem, fix: 'mount with -o direct-io-mode=enable' };
  }

  /**
   * sshfs (without hard_remove) and NFS keep a file replaced or deleted while open under a hidden name
   * until it is closed; one left behind (a mount cut while the file was open) stays for ever. Advisory:
   * conductors do not replace files readers may hold open where they can help it, and the cache cleaner
   * removes such litter once old.
   */
  private async replaceWhileOpen(dir: string): Promise<ProbeResult> {
    const probe = 'replace-while-open';
    const target = path.join(dir, 'open');
    await fsp.writeFile(target, 'old');
    const handle = await fsp.open(target, 'r');
    let litter: string[];
    try {
      await fsp.writeFile(path.join(dir, 'open.new'), 'new');
      await fsp.rename(path.join(dir, 'open.new'), target);
      litter = (await fsp.readdir(dir)).filter((n) => LITTER_PREFIXES.some((p) => n.startsWith(p)));
    } finally {
      await handle.close();
    }
    if (litter.length === 0)
      return { probe, ok: true, detail: 'a file replaced while open leaves no hidden copy' };
    return {
      probe,
      ok: false,
      advisory: true,
      detail: `a file replaced while open is kept as ${litter.join(', ')} until closed; a mount cut meanwhile leaves it for ever`,
      fix: 'the cache cleaner removes such files once older than CLEANER_GRACE_MS; with sshfs, hard_remove (where the FUSE library offers it) avoids them',
    };
  }
}

/** One text naming every failed probe, what was found and what to change. */
export function describeRefusal(root: string, failures: ProbeResult[]): string {
  return [
    `CACHE_ROOT ${root} cannot support the lock timings safely:`,
    ...failures.map((f) => `  ${f.probe}: ${f.detail}${f.fix ? `; fix: ${f.fix}` : ''}`),
    '  (CACHE_ROOT_CHECK=warn starts anyway, with this warning: only for a folder you know to be safe)',
  ].join('\n');
}

async function writeSynced(file: string, data: string): Promise<void> {
  const handle = await fsp.open(file, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Probe folders of checks that died mid-way (best effort: a problem here is the check's to find). Their age
 * is judged against our own probe folder `own`, just made, on the file system's clock that stamped both:
 * never against this host's clock, which may be hours off the others' (a fresh check of another conductor
 * then looked an hour old and was removed under it).
 */
async function removeAbandonedProbes(root: string, own: string): Promise<void> {
  const now = (await fsp.stat(own).catch(() => undefined))?.mtimeMs;
  if (now === undefined) return;
  const names = await fsp.readdir(root).catch(() => [] as string[]);
  for (const name of names) {
    const probe = path.join(root, name);
    if (!name.startsWith(PROBE_PREFIX) || probe === own) continue;
    const stat = await fsp.lstat(probe).catch(() => undefined);
    if (stat?.isDirectory() && now - stat.mtimeMs > ABANDONED_PROBE_MS)
      await fsp.rm(probe, { recursive: true, force: true }).catch(() => undefined);
  }
}
