import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { sh } from '../hosts/host-network';

/**
 * Where a shared file system's servers listen and how a host's programs are started: on the multi-host
 * bed the bridge address and `nsenter` into the host's namespace (so a cut link cuts the mount too);
 * alone, a loopback address and no prefix.
 */
export interface FsPlace {
  serverAddress: string;
  launcher(host: string): string[];
}

/** What the multi-host bed asks of the folder its hosts share (sshfs, CephFS or GlusterFS). */
export interface HostShare {
  readonly kind: string;
  mountPoint(host: string): string;
  mount(host: string): Promise<string>;
  killMount(host: string): Promise<void>;
  freezeMount(host: string): void;
  thawMount(host: string): void;
  isFrozen(host: string): boolean;
  isMounted(host: string): boolean;
  stop(): Promise<void>;
}

/** Is `dir` a mount point now (/proc/self/mountinfo, which never blocks on a hung FUSE mount)? */
export async function isMountPoint(dir: string): Promise<boolean> {
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((line) => line.split(' ')[4] === dir);
}

/** Ends a child: SIGCONT (it may be frozen), SIGTERM, SIGKILL after `graceMs`; resolves once it is gone. */
export async function endChild(child: ChildProcess, graceMs = 3_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGCONT');
  child.kill('SIGTERM');
  await Promise.race([exited, new Promise((r) => setTimeout(r, graceMs))]);
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited;
  }
}

/** A server program run in the foreground as our child, its output kept for failure reports. */
export function spawnKept(command: string, args: string[], output: string[]): ChildProcess {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (d: Buffer) => output.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
  child.on('error', (e) => output.push(`${command}: ${e.message}\n`));
  return child;
}

/**
 * One FUSE client per host, each a foreground child started through the host's launcher, so teardown
 * ends exactly the clients it started. Kill = lazy unmount, then the client ends (what a dead client
 * leaves: ENOTCONN); freeze = SIGSTOP (calls wait in the kernel, as on a `hard` mount of a gone server).
 */
export class FuseClients {
  private readonly clients = new Map<string, ChildProcess>();
  private readonly mounts = new Map<string, string>();
  private readonly frozen = new Set<string>();

  constructor(private readonly place: FsPlace) {}

  /** Starts `argv` (a foreground FUSE client) for `host` and waits until `target` is a mount point. */
  async mount(host: string, target: string, argv: string[], timeoutMs = 20_000): Promise<string> {
    await fsp.mkdir(target, { recursive: true });
    const [command, ...prefix] = [...this.place.launcher(host), ...argv];
    const output: string[] = [];
    const client = spawnKept(command!, prefix, output);
    this.clients.set(host, client);
    const deadline = Date.now() + timeoutMs;
    while (!(await isMountPoint(target))) {
      if (client.exitCode !== null || client.signalCode !== null || Date.now() > deadline) {
        this.clients.delete(host);
        await sh('umount', ['-l', target]).catch(() => undefined);
        await endChild(client, 0);
        throw new Error(`${argv[0]} mount for host ${host} did not come up:\n${output.join('')}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    this.mounts.set(host, target);
    return target;
  }

  async kill(host: string): Promise<void> {
    const target = this.mounts.get(host);
    if (target) await sh('umount', ['-l', target]);
    this.mounts.delete(host);
    await this.end(host);
  }

  freeze(host: string): void {
    this.clientOf(host).kill('SIGSTOP');
    this.frozen.add(host);
  }

  thaw(host: string): void {
    this.clientOf(host).kill('SIGCONT');
    this.frozen.delete(host);
  }

  isFrozen(host: string): boolean {
    return this.frozen.has(host);
  }

  isMounted(host: string): boolean {
    return this.mounts.has(host);
  }

  pid(host: string): number {
    return this.clientOf(host).pid!;
  }

  /** Lazily unmounts every host (a cut-off host's mount may hang) and ends every client. */
  async stopAll(): Promise<string[]> {
    const errors: string[] = [];
    for (const [host, target] of this.mounts)
      await sh('umount', ['-l', target]).catch((e: Error) => errors.push(`${host}: ${e.message}`));
    this.mounts.clear();
    for (const host of [...this.clients.keys()]) await this.end(host);
    return errors;
  }

  private clientOf(host: string): ChildProcess {
    const client = this.clients.get(host);
    if (!client) throw new Error(`no FUSE client for host ${host}`);
    return client;
  }

  private async end(host: string): Promise<void> {
    const client = this.clients.get(host);
    this.clients.delete(host);
    this.frozen.delete(host);
    if (client) await endChild(client);
  }
}

/**
 * A share whose hosts mount it through FuseClients: the fault verbs are the clients' own. Kill = lazy
 * unmount, then the client ends (files still open through it then fail with ENOTCONN); freeze = the
 * client SIGSTOPped, so calls through it wait in the kernel (as on an NFS `hard` mount of a server that is
 * gone) until thaw.
 */
export abstract class FuseShare implements HostShare {
  abstract readonly kind: string;
  protected readonly clients: FuseClients;

  constructor(place: FsPlace) {
    this.clients = new FuseClients(place);
  }

  abstract mountPoint(host: string): string;
  abstract mount(host: string): Promise<string>;
  abstract stop(): Promise<void>;

  async killMount(host: string): Promise<void> {
    await this.clients.kill(host);
  }

  freezeMount(host: string): void {
    this.clients.freeze(host);
  }

  thawMount(host: string): void {
    this.clients.thaw(host);
  }

  isFrozen(host: string): boolean {
    return this.clients.isFrozen(host);
  }

  isMounted(host: string): boolean {
    return this.clients.isMounted(host);
  }
}
