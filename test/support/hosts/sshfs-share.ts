import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { HostNetwork } from './host-network';
import { sh } from './host-network';
import { endChild, FuseShare } from '../shared-fs/fuse-clients';
import { SSHFS_NO_CACHE, sshdConfig } from '../loopback-sshfs';

/** sshfs options of the bed: no directory, attribute, entry or negative caching (what locks need). */

const SSHD = '/usr/sbin/sshd';

function missing(what: string): Error {
  return new Error(
    `${what} is not installed: the multi-host bed needs openssh-server and sshfs ` +
      '(scripts/test-prerequisites.sh installs them: `apt-get install -y openssh-server sshfs`)',
  );
}

/**
 * One folder served to the bed's hosts the way a network file system is: an sshd of the test's own
 * (own config, host key, client key, port) listening on the bridge address only, and per host an sshfs
 * mount made from inside that host's namespace, so a cut link takes the mount away with it.
 */
export class SshfsShare extends FuseShare {
  readonly kind = 'sshfs';

  private constructor(
    private readonly network: HostNetwork,
    readonly exported: string,
    private readonly base: string,
    private readonly port: number,
    private readonly sshd: ChildProcess,
    private readonly sshdOutput: string[],
  ) {
    super(network);
  }

  /** Serves `exported` (an absolute folder) over sftp on the bridge address. */
  static async start(network: HostNetwork, exported: string, base: string): Promise<SshfsShare> {
    if (!existsSync(SSHD)) throw missing('sshd');
    await sh('sh', ['-c', 'command -v sshfs']).catch(() => {
      throw missing('sshfs');
    });
    const dir = path.join(base, 'sshd');
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    await fsp.mkdir('/run/sshd', { recursive: true, mode: 0o755 }); // sshd's privilege separation folder
    await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')]);
    await sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'client_key')]);
    await fsp.copyFile(path.join(dir, 'client_key.pub'), path.join(dir, 'authorized_keys'));
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    await fsp.writeFile(
      path.join(dir, 'sshd_config'),
      sshdConfig({
        listen: [`ListenAddress ${network.serverAddress}:${port}`],
        hostKey: path.join(dir, 'host_key'),
        dir,
        // Many small lock-folder operations from several mounts at once.
        extra: ['MaxSessions 64', 'MaxStartups 64'],
      }),
    );
    const output: string[] = [];
    const sshd = spawn(SSHD, ['-D', '-e', '-f', path.join(dir, 'sshd_config')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    sshd.stdout.on('data', (d: Buffer) => output.push(d.toString()));
    sshd.stderr.on('data', (d: Buffer) => output.push(d.toString()));
    const share = new SshfsShare(network, exported, dir, port, sshd, output);
    const deadline = Date.now() + 15_000;
    while (!output.join('').includes('Server listening')) {
      if (sshd.exitCode !== null || Date.now() > deadline) {
        await share.stop().catch(() => undefined);
        throw new Error(`the bed's sshd did not start:\n${output.join('')}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return share;
  }

  /** Where `host` sees the shared folder (its CACHE_ROOT). */
  mountPoint(host: string): string {
    return path.join(this.base, '..', 'mounts', host);
  }

  /**
   * Mounts the share for `host`, from inside its namespace. sshfs runs in the foreground as our child
   * (`-f`), so teardown ends exactly the clients it started, and with them their sessions on the sshd.
   */
  async mount(host: string): Promise<string> {
    const target = this.mountPoint(host);
    const options = [
      SSHFS_NO_CACHE.join(','),
      `port=${this.port}`,
      `IdentityFile=${path.join(this.base, 'client_key')}`,
      'StrictHostKeyChecking=no',
      'UserKnownHostsFile=/dev/null',
      'LogLevel=ERROR',
      'BatchMode=yes',
    ].join(',');
    const remote = `root@${this.network.serverAddress}:${this.exported}`;
    return this.clients.mount(host, target, ['sshfs', '-f', remote, target, '-o', options]);
  }

  /** Unmounts every host (lazily: a mount of a cut-off host may hang) and stops sshd. */
  async stop(): Promise<void> {
    const errors = await this.clients.stopAll();
    await endChild(this.sshd, 5_000);
    if (errors.length > 0) throw new Error(`sshfs share stop: ${errors.join('; ')}`);
  }

  output(): string {
    return this.sshdOutput.join('');
  }
}
