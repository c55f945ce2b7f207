import type { ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { sh } from '../hosts/host-network';
import { endChild, type FsPlace, FuseShare, spawnKept } from './fuse-clients';

/** The volume's shape and options (`gluster volume set`, applied before it starts). */
export interface GlusterOptions {
  /** Bricks of the distributed volume (default 1). */
  bricks?: number;
  /** e.g. `{ 'performance.stat-prefetch': 'off' }`. */
  volumeOptions?: Record<string, string>;
  /** Options of each FUSE client, e.g. `['--attribute-timeout=0', '--entry-timeout=0']`. */
  clientOptions?: string[];
}

/**
 * FUSE client options without kernel attribute or name caching (what locks need, with stat-prefetch off),
 * nor page caching of file data: without `direct-io-mode=enable` a client that read pieces of a file
 * another client was writing kept old bytes and showed them in the published file (8 of 8 trials;
 * docs/deployment.md, GlusterFS).
 */
export const GLUSTER_NO_CLIENT_CACHE = [
  '--attribute-timeout=0',
  '--entry-timeout=0',
  '--negative-timeout=0',
  '--direct-io-mode=enable',
];

/** The brick port glusterd's clients and bricks expect (24007): each bed has an address of its own. */
const GLUSTERD_PORT = 24007;
const VOLUME = 'icc';

function missing(what: string): Error {
  return new Error(
    `${what} is not installed: the GlusterFS bed needs Debian's glusterfs-server and glusterfs-client ` +
      '(scripts/test-prerequisites.sh installs them)',
  );
}

/**
 * A private GlusterFS (issue 24's bed): a glusterd with its own working and run folders, CLI socket and
 * volfile, listening on the place's address only (the CLI refuses localhost/127.0.0.1 as a brick host; a
 * bed address such as 127.x.y.z or the bridge works), a distributed volume with bricks on local folders,
 * and one FUSE client (`glusterfs -N`) per host. glusterd starts the brick processes itself; stop() ends
 * them through the volume, then by their pid files, and removes the files they leave outside `base`.
 */
export class GlusterVolume extends FuseShare {
  readonly kind = 'glusterfs';

  private constructor(
    private readonly place: FsPlace,
    readonly base: string,
    private readonly glusterd: ChildProcess,
    private readonly glusterdOutput: string[],
    readonly bricks: string[],
    private readonly clientOptions: string[],
  ) {
    super(place);
  }

  static async start(place: FsPlace, base: string, options: GlusterOptions = {}): Promise<GlusterVolume> {
    for (const bin of ['glusterd', 'gluster', 'glusterfs'])
      await sh('sh', ['-c', `command -v ${bin}`]).catch(() => {
        throw missing(bin);
      });
    const dir = path.join(base, 'gluster');
    for (const sub of ['wd', 'run', 'log']) await fsp.mkdir(path.join(dir, sub), { recursive: true });
    const bricks = Array.from({ length: options.bricks ?? 1 }, (_, i) => path.join(dir, `brick${i}`));
    for (const brick of bricks) await fsp.mkdir(brick);
    const volfile = path.join(dir, 'glusterd.vol');
    await fsp.writeFile(
      volfile,
      [
        'volume management',
        '    type mgmt/glusterd',
        `    option working-directory ${dir}/wd`,
        `    option run-directory ${dir}/run`,
        // The CLI's socket (default /var/run/glusterd.socket, which would be the machine's one).
        `    option glusterd-sockfile ${dir}/run/cli.sock`,
        '    option transport-type socket',
        '    option transport.address-family inet',
        `    option transport.socket.bind-address ${place.serverAddress}`,
        `    option transport.socket.listen-port ${GLUSTERD_PORT}`,
        '    option ping-timeout 0',
        '    option event-threads 1',
        'end-volume',
        '',
      ].join('\n'),
    );
    const output: string[] = [];
    const glusterd = spawnKept(
      'glusterd',
      ['-N', '-f', volfile, '-p', `${dir}/run/glusterd.pid`, '-l', `${dir}/log/glusterd.log`],
      output,
    );
    const volume = new GlusterVolume(place, dir, glusterd, output, bricks, options.clientOptions ?? []);
    try {
      const deadline = Date.now() + 20_000;
      while (
        !(await volume.gluster('volume', 'list').then(
          () => true,
          () => false,
        ))
      ) {
        if (glusterd.exitCode !== null || Date.now() > deadline)
          throw new Error(`glusterd did not answer:\n${output.join('')}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const brickArgs = bricks.map((b) => `${place.serverAddress}:${b}`);
      // `force`: bricks on the root file system are refused without it.
      await volume.gluster('volume', 'create', VOLUME, ...brickArgs, 'force');
      for (const [key, value] of Object.entries(options.volumeOptions ?? {}))
        await volume.gluster('volume', 'set', VOLUME, key, value);
      await volume.gluster('volume', 'start', VOLUME);
    } catch (error) {
      await volume.stop().catch(() => undefined);
      throw new Error(`GlusterFS bed did not start: ${(error as Error).message}`);
    }
    return volume;
  }

  /** Runs the gluster CLI against this glusterd only (its own socket and log). */
  async gluster(...args: string[]): Promise<string> {
    return sh(
      'gluster',
      [
        `--glusterd-sock=${this.base}/run/cli.sock`,
        `--log-file=${this.base}/log/cli.log`,
        '--mode=script',
        ...args,
      ],
      60_000,
    );
  }

  async setOption(key: string, value: string): Promise<void> {
    await this.gluster('volume', 'set', VOLUME, key, value);
  }

  mountPoint(host: string): string {
    return path.join(this.base, '..', 'mounts', host);
  }

  /** Mounts the volume for `host` (`glusterfs -N`, from inside the host's namespace). */
  async mount(host: string): Promise<string> {
    return this.clients.mount(host, this.mountPoint(host), [
      'glusterfs',
      '-N',
      `--volfile-server=${this.place.serverAddress}`,
      `--volfile-id=${VOLUME}`,
      `--log-file=${this.base}/log/mount-${host}.log`,
      ...this.clientOptions,
      this.mountPoint(host),
    ]);
  }

  /** Unmounts every host, stops the volume and glusterd, ends any brick left, removes its socket and log. */
  async stop(): Promise<void> {
    const errors = await this.clients.stopAll();
    const brickPids = await this.brickPids();
    const brickFiles = await Promise.all(brickPids.map((pid) => this.brickOutsideFiles(pid)));
    await this.gluster('volume', 'stop', VOLUME, 'force').catch(() => undefined);
    await endChild(this.glusterd, 5_000);
    for (const pid of brickPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const file of brickFiles.flat()) await fsp.rm(file, { force: true });
    if (errors.length > 0) throw new Error(`GlusterFS bed stop: ${errors.join('; ')}`);
  }

  private async brickPids(): Promise<number[]> {
    const folder = path.join(this.base, 'run', 'vols', VOLUME);
    const files = await fsp.readdir(folder).catch(() => [] as string[]);
    const pids: number[] = [];
    for (const file of files.filter((f) => f.endsWith('.pid'))) {
      const pid = Number((await fsp.readFile(path.join(folder, file), 'utf8')).trim());
      if (Number.isInteger(pid) && pid > 0) pids.push(pid);
    }
    return pids;
  }

  /** A brick's socket (/var/run/gluster/*.socket) and log (/var/log/glusterfs/bricks/*), from its command line. */
  private async brickOutsideFiles(pid: number): Promise<string[]> {
    const argv = (await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    // Only a brick of this bed (its command line names a brick folder of ours).
    if (!this.bricks.some((b) => argv.includes(b))) return [];
    const after = (flag: string) => {
      const i = argv.indexOf(flag);
      return i >= 0 ? argv[i + 1] : undefined;
    };
    return [after('-S'), after('-l')].filter((f): f is string => !!f);
  }

  /** glusterd's own output, for failure reports (its log is under `base`/log). */
  output(): string {
    return this.glusterdOutput.join('');
  }
}
