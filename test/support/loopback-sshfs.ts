import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import { createServer } from 'node:net';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { makeTempDir, removeDir } from './temp-dirs';

const run = promisify(execFile);

/** The options issue 13 found safe for the lock timings: no directory cache, no attribute or entry cache. */
export const SSHFS_NO_CACHE = ['dir_cache=no', 'attr_timeout=0', 'entry_timeout=0', 'negative_timeout=0'];

const SSHD = '/usr/sbin/sshd';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
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
 * One host's view of a shared folder over the network, on this machine alone: an sshd of the test's own
 * on 127.0.0.1 (its own port, host key, client key and config; nothing of the machine's ssh set-up is
 * used), and sshfs mounts of a local folder through it. Mounts made with other options than
 * SSHFS_NO_CACHE show what a network mount's caches do to the lock timings. A first piece of the
 * several-host test bed: the same mounts made from network namespaces make the hosts.
 */
export class LoopbackSshfs {
  private readonly mounts = new Set<string>();

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
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        `AuthorizedKeysFile ${path.join(base, 'authorized_keys')}`,
        `PidFile ${path.join(base, 'sshd.pid')}`,
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'StrictModes no',
        'Subsystem sftp internal-sftp',
        '',
      ].join('\n'),
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

  /** Mounts `folder` (a local path) at `mountPoint` through the sshd, with these sshfs `-o` options. */
  async mount(folder: string, mountPoint: string, options: string[]): Promise<void> {
    await fsp.mkdir(mountPoint, { recursive: true });
    await run(
      '/usr/bin/sshfs',
      [
        `root@127.0.0.1:${folder}`,
        mountPoint,
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
      { timeout: 20_000 },
    ).catch((error: Error & { stderr?: string }) => {
      throw new Error(`sshfs mount of ${folder} at ${mountPoint} failed: ${error.stderr ?? error.message}`);
    });
    this.mounts.add(mountPoint);
  }

  async unmount(mountPoint: string): Promise<void> {
    await run('/usr/bin/fusermount3', ['-u', '-z', mountPoint]).catch(() => undefined);
    this.mounts.delete(mountPoint);
  }

  /** Unmounts everything, stops the sshd, removes its folder. */
  async stop(): Promise<void> {
    for (const mountPoint of [...this.mounts]) await this.unmount(mountPoint);
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
