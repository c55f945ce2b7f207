import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sh } from '../hosts/host-network';
import { endChild, type FsPlace, FuseShare, spawnKept } from './fuse-clients';

/** Session timings of the bed's file system (`ceph fs set`), in seconds. */
export interface CephSessionTimings {
  /** A client silent this long is stale: its capabilities may be revoked (CephFS default 60). */
  sessionTimeoutS: number;
  /** A client silent this long is evicted and blocklisted (CephFS default 300). */
  sessionAutocloseS: number;
}

export const CEPH_DEFAULT_SESSION: CephSessionTimings = { sessionTimeoutS: 60, sessionAutocloseS: 300 };

const GiB = 1024 ** 3;

/**
 * The OSD's capacity (memstore keeps every object in the OSD's memory, and only what is stored costs
 * memory). A full OSD does not fail writes at once: the write that crosses the full ratio and the MDS's
 * metadata writes block (measured on this bed at 4 GiB: a write stalled 60 s, then `ENOSPC`; a `stat` of
 * new files through the other client stalled 20 s each; `ceph health`: "1 full osd(s); 2 pool(s) full",
 * "MDS slow metadata IOs"), so both clients look hung. The large chaos campaign copies up to about 7 GiB
 * (5 images of 96 MiB and 25 of up to 4 MiB onto 12 nodes): half the machine's memory, at least 4 GiB, at
 * most 16.
 */
export function memstoreBytes(totalMemory = os.totalmem()): number {
  return Math.min(16 * GiB, Math.max(4 * GiB, Math.floor(totalMemory / 2 / GiB) * GiB));
}

function missing(what: string): Error {
  return new Error(
    `${what} is not installed: the CephFS bed needs Debian's ceph-mon, ceph-osd, ceph-mds, ceph-fuse and ` +
      'ceph-common (scripts/test-prerequisites.sh installs them)',
  );
}

/**
 * A private CephFS (issue 24's bed): one mon on the place's server address (auth none, no mgr), one OSD
 * on memstore (no block device; data lives in the OSD's memory), one MDS, pools of size 1, and one
 * ceph-fuse client per host, each with its own client name (`client.<host>`) and so its own pid file,
 * admin socket and log. All state is under `base`; every daemon is our foreground child.
 */
export class CephfsCluster extends FuseShare {
  readonly kind = 'cephfs';
  private readonly daemons: ChildProcess[] = [];
  private readonly daemonOutput: string[] = [];

  private constructor(
    private readonly place: FsPlace,
    readonly base: string,
    readonly conf: string,
  ) {
    super(place);
  }

  /** Starts mon, OSD and MDS; the file system is ready to mount when this resolves. */
  static async start(
    place: FsPlace,
    base: string,
    session: CephSessionTimings = CEPH_DEFAULT_SESSION,
  ): Promise<CephfsCluster> {
    for (const bin of ['ceph-mon', 'ceph-osd', 'ceph-mds', 'ceph-fuse', 'ceph', 'monmaptool'])
      await sh('sh', ['-c', `command -v ${bin}`]).catch(() => {
        throw missing(bin);
      });
    const dir = path.join(base, 'ceph');
    for (const sub of ['run', 'log', 'mon/mon.a', 'osd/osd.0', 'mds/mds.a'])
      await fsp.mkdir(path.join(dir, sub), { recursive: true });
    const fsid = randomUUID();
    // A port of the bed's own on its address (the address is the bed's alone, so a random one is free).
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const conf = path.join(dir, 'ceph.conf');
    const addr = place.serverAddress;
    await fsp.writeFile(
      conf,
      [
        '[global]',
        `fsid = ${fsid}`,
        `mon host = v2:${addr}:${port}`,
        'auth cluster required = none',
        'auth service required = none',
        'auth client required = none',
        'auth allow insecure global id reclaim = true',
        'mon allow pool size one = true',
        'mon warn on pool no redundancy = false',
        'osd pool default size = 1',
        'osd pool default min size = 1',
        'osd pool default pg autoscale mode = off',
        'osd crush chooseleaf type = 0',
        'osd objectstore = memstore',
        `memstore device bytes = ${memstoreBytes()}`,
        'ms bind ipv6 = false',
        `run dir = ${dir}/run`,
        `admin socket = ${dir}/run/$name.asok`,
        `pid file = ${dir}/run/$name.pid`,
        `log file = ${dir}/log/$name.log`,
        `mon data = ${dir}/mon/$name`,
        `osd data = ${dir}/osd/$name`,
        `mds data = ${dir}/mds/$name`,
        `keyring = ${dir}/keyring`,
        `mon cluster log file = ${dir}/log/cluster.log`,
        // The servers listen on the place's address only (on the bed: the bridge, so a cut link cuts them).
        '[mon]',
        `public addr = ${addr}`,
        '[osd]',
        `public addr = ${addr}`,
        `cluster addr = ${addr}`,
        '[mds]',
        `public addr = ${addr}`,
        '',
      ].join('\n'),
    );
    await fsp.writeFile(path.join(dir, 'keyring'), '');
    const cluster = new CephfsCluster(place, dir, conf);
    try {
      await sh('monmaptool', [
        '--create',
        '--add',
        'a',
        `${addr}:${port}`,
        '--fsid',
        fsid,
        '--clobber',
        `${dir}/monmap`,
      ]);
      await sh('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', `${dir}/monmap`]);
      cluster.daemon('ceph-mon', ['-i', 'a']);
      const uuid = randomUUID();
      const id = (await cluster.ceph('osd', 'new', uuid)).trim();
      if (id !== '0') throw new Error(`ceph osd new gave id ${JSON.stringify(id)}, expected 0`);
      await sh('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', uuid], 60_000);
      cluster.daemon('ceph-osd', ['-i', '0']);
      await cluster.ceph('osd', 'pool', 'create', 'cephfs_metadata', '8');
      await cluster.ceph('osd', 'pool', 'create', 'cephfs_data', '8');
      await cluster.ceph('fs', 'new', 'cephfs', 'cephfs_metadata', 'cephfs_data');
      await cluster.ceph('fs', 'set', 'cephfs', 'session_timeout', String(session.sessionTimeoutS));
      await cluster.ceph('fs', 'set', 'cephfs', 'session_autoclose', String(session.sessionAutocloseS));
      cluster.daemon('ceph-mds', ['-i', 'a']);
      const deadline = Date.now() + 60_000;
      while (!(await cluster.ceph('mds', 'stat')).includes('up:active')) {
        if (Date.now() > deadline) throw new Error('the MDS did not become active within 60 s');
        await new Promise((r) => setTimeout(r, 200));
      }
    } catch (error) {
      const output = cluster.output();
      await cluster.stop().catch(() => undefined);
      throw new Error(`CephFS bed did not start: ${(error as Error).message}\n${output}`);
    }
    return cluster;
  }

  /** Runs the ceph CLI against this cluster (it never waits long for a mon that is gone). */
  async ceph(...args: string[]): Promise<string> {
    return sh('ceph', ['-c', this.conf, '--connect-timeout', '15', ...args], 30_000);
  }

  private daemon(command: string, args: string[]): void {
    const child = spawnKept(command, ['-c', this.conf, '-f', ...args], this.daemonOutput);
    this.daemons.push(child);
  }

  mountPoint(host: string): string {
    return path.join(this.base, '..', 'mounts', host);
  }

  /**
   * Mounts the file system for `host` (ceph-fuse in the foreground, from inside the host's namespace).
   * `client.<host>` gives each client its own pid file and admin socket: two clients of one name fail
   * with "failed to lock pidfile".
   */
  async mount(host: string): Promise<string> {
    return this.clients.mount(host, this.mountPoint(host), [
      'ceph-fuse',
      '-c',
      this.conf,
      '-n',
      `client.${host}`,
      '-f',
      this.mountPoint(host),
    ]);
  }

  /** The MDS's session id of `host`'s client (from `client ls`), undefined when it has none. */
  async sessionOf(host: string): Promise<number | undefined> {
    const sessions = JSON.parse(await this.ceph('tell', 'mds.a', 'client', 'ls', '--format', 'json')) as {
      id: number;
      client_metadata?: { entity_id?: string };
    }[];
    return sessions.find((s) => s.client_metadata?.entity_id === host)?.id;
  }

  /** Evicts `host`'s client at the MDS, as an operator does (`ceph tell mds.<id> client evict`). */
  async evict(host: string): Promise<void> {
    const id = await this.sessionOf(host);
    if (id === undefined) throw new Error(`no MDS session of client.${host}`);
    await this.ceph('tell', 'mds.a', 'client', 'evict', `id=${id}`);
  }

  /** `ceph health detail` lines that say the cluster is (or was about to be) full; [] when it cannot tell. */
  async fullWarnings(): Promise<string[]> {
    const detail = await this.ceph('health', 'detail').catch(() => '');
    return detail
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => /\bfull\b|slow metadata/i.test(line));
  }

  /**
   * Unmounts every host lazily, ends every client, then the MDS, OSD and mon (in that order). A cluster
   * that went full says so first: the clients' stalls it causes look like a product hang otherwise.
   */
  async stop(): Promise<void> {
    const full = await this.fullWarnings();
    if (full.some((line) => /\bfull\b/i.test(line)))
      console.warn(
        `[cephfs bed] the cluster is full (${memstoreBytes()} bytes of memstore): ${full.join('; ')}`,
      );
    const errors = await this.clients.stopAll();
    for (const daemon of [...this.daemons].reverse()) await endChild(daemon, 5_000);
    this.daemons.length = 0;
    if (errors.length > 0) throw new Error(`CephFS bed stop: ${errors.join('; ')}`);
  }

  /** The daemons' own output and the tail of their logs, for failure reports. */
  output(): string {
    const logs = ['mon.a', 'osd.0', 'mds.a']
      .map((name) => path.join(this.base, 'log', `${name}.log`))
      .filter((file) => existsSync(file));
    return `${this.daemonOutput.join('')}\n(logs: ${logs.join(', ')})`;
  }
}
