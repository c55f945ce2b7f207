import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port';
import { makeTempDir, removeDir } from './temp-dirs';

const run = promisify(execFile);

/** The options issue 13 found safe for the lock timings: no directory cache, no attribute or entry cache. */
export const SSHFS_NO_CACHE = ['dir_cache=no', 'attr_timeout=0', 'entry_timeout=0', 'negative_timeout=0'];

const SSHD = '/usr/sbin/sshd';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function isMounted(mountPoint: string): Promise<boolean> {
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((line) => line.split(' ')[4] === mountPoint);
}

function requireTools(): void {
  const missing = [SSHD, '/usr/bin/sshfs', '/usr/bin/ssh-keygen', '/usr/bin/fusermount3'].filter(
    (tool) => !existsSync(tool),
  );
  if (missing.length > 0)
    throw new Error(
      `loopback sshfs needs ${missing.join(', ')}: install them with \`apt-get install openssh-server sshfs\``,
    );
  if (!existsSync('/dev/fuse')) throw new Error('loopback sshfs needs /dev/fuse (FUSE), which is missing');
  if (process.getuid?.() !== 0)
    throw new Error('loopback sshfs mounts need root (sshd of its own, FUSE mounts)');
}

/**
 * An sshd_config for a test's own sshd that serves only sftp to its own key (no password, no PAM); `dir`
 * holds its authorized_keys and pid file. Shared by this loopback mount and the multi-host bed.
 */
export function sshdConfig(options: {
  listen: string[];
  hostKey: string;
  dir: string;
  extra?: string[];
}): string {
  return [
    ...options.listen,
    `HostKey ${options.hostKey}`,
    `AuthorizedKeysFile ${path.join(options.dir, 'authorized_keys')}`,
    `PidFile ${path.join(options.dir, 'sshd.pid')}`,
    'PermitRootLogin prohibit-password',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'UsePAM no',
    'StrictModes no',
    'Subsystem sftp internal-sftp',
    ...(options.extra ?? []),
    '',
  ].join('\n');
}

/**
 * One host's view of a shared folder over the network, on this machine alone: an sshd of the test's own
 * on 127.0.0.1 (its own port, host key, client key and config; nothing of the machine's ssh set-up is
 * used), and sshfs mounts of a local folder through it. Mounts made with other options than
 * SSHFS_NO_CACHE show what a network mount's caches do to the lock timings. A first piece of the
 * several-host test bed: the same mounts made from network namespaces make the hosts.
 */
export class LoopbackSshfs {
  private readonly mounts = new Map<string, ChildProcess>();

  private constructor(
    readonly base: string,
    readonly port: number,
    private readonly clientKey: string,
    private readonly sshd: ChildProcess,
    private readonly output: string[],
  ) {}

  static async start(): Promise<LoopbackSshfs> {
    requireTools();
    const base = await makeTempDir('sshd');
    const port = await freePort();
    const hostKey = path.join(base, 'host_ed25519');
    const clientKey = path.join(base, 'client_ed25519');
    for (const key of [hostKey, clientKey])
      await run('/usr/bin/ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    await fsp.copyFile(`${clientKey}.pub`, path.join(base, 'authorized_keys'));
    const config = path.join(base, 'sshd_config');
    await fsp.writeFile(
      config,
      sshdConfig({ listen: [`Port ${port}`, 'ListenAddress 127.0.0.1'], hostKey, dir: base }),
    );
    // sshd wants its privilege-separation folder (made by the package's service unit, which we do not run).
    await fsp.mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    const sshd = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    sshd.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
    sshd.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
    const bed = new LoopbackSshfs(base, port, clientKey, sshd, output);
    const deadline = Date.now() + 15_000;
    while (!output.join('').includes('Server listening')) {
      if (sshd.exitCode !== null || Date.now() > deadline) {
        await bed.stop();
        throw new Error(`sshd of the test did not start:\n${output.join('')}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return bed;
  }

  /**
   * Mounts `folder` (a local path) at `mountPoint` through the sshd, with these sshfs `-o` options. sshfs
   * runs in the foreground as our child, so a test can kill it (a mount that dies with files open).
   */
  async mount(folder: string, mountPoint: string, options: string[]): Promise<void> {
    await fsp.mkdir(mountPoint, { recursive: true });
    const child = spawn(
      '/usr/bin/sshfs',
      [
        `root@127.0.0.1:${folder}`,
        mountPoint,
        '-f',
        '-p',
        String(this.port),
        '-o',
        [
          `IdentityFile=${this.clientKey}`,
          'StrictHostKeyChecking=no',
          'UserKnownHostsFile=/dev/null',
          'BatchMode=yes',
          'LogLevel=ERROR',
          ...options,
        ].join(','),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const output: string[] = [];
    child.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
    child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
    this.mounts.set(mountPoint, child);
    const deadline = Date.now() + 20_000;
    while (!(await isMounted(mountPoint))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        await this.unmount(mountPoint);
        throw new Error(`sshfs mount of ${folder} at ${mountPoint} failed: ${output.join('')}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * The mount's server stops answering (its sshfs is SIGSTOPped): file calls through it wait in the kernel,
   * as on a FUSE server that hangs or an NFS `hard` mount of an unreachable server, until thaw().
   */
  freeze(mountPoint: string): void {
    this.client(mountPoint).kill('SIGSTOP');
  }

  thaw(mountPoint: string): void {
    this.client(mountPoint).kill('SIGCONT');
  }

  private client(mountPoint: string): ChildProcess {
    const child = this.mounts.get(mountPoint);
    if (!child) throw new Error(`no sshfs mount at ${mountPoint}`);
    return child;
  }

  /** The mount dies as in a crash or a cut link: its sshfs is killed, then the dead mount is detached. */
  async kill(mountPoint: string): Promise<void> {
    this.mounts.get(mountPoint)?.kill('SIGKILL');
    await this.unmount(mountPoint);
  }

  async unmount(mountPoint: string): Promise<void> {
    await run('/usr/bin/fusermount3', ['-u', '-z', mountPoint]).catch(() => undefined);
    const child = this.mounts.get(mountPoint);
    this.mounts.delete(mountPoint);
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT'); // a frozen one
      const exited = new Promise((resolve) => child.once('exit', resolve));
      if (!(await Promise.race([exited.then(() => true), sleep(5_000).then(() => false)])))
        child.kill('SIGKILL');
    }
  }

  /** Unmounts everything, stops the sshd, removes its folder. */
  async stop(): Promise<void> {
    for (const mountPoint of [...this.mounts.keys()]) await this.unmount(mountPoint);
    if (this.sshd.exitCode === null) {
      const exited = new Promise((resolve) => this.sshd.once('exit', resolve));
      this.sshd.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
    }
    await removeDir(this.base);
  }

  /** sshd's output, for a failing test's report. */
  report(): string {
    return this.output.join('');
  }
}
