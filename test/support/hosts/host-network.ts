import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Runs a command as the test's root user; a failure names the command and its stderr. */
export async function sh(command: string, args: string[], timeoutMs = 30_000): Promise<string> {
  try {
    const { stdout } = await exec(command, args, { timeout: timeoutMs });
    return stdout;
  } catch (error) {
    const e = error as Error & { stderr?: string };
    throw new Error(`${command} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

/** The bed needs root (namespaces, bridge, FUSE mounts): say so plainly rather than fail half-way. */
export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0)
    throw new Error(
      `${what} needs root (network namespaces, a bridge and FUSE mounts): run it as root, as CI does ` +
        `(e.g. \`sudo npx vitest run <file>\`)`,
    );
}

/** One simulated host: a network namespace with one veth leg on the bed's bridge. */
export interface SimulatedHost {
  name: string;
  /** The namespace (`ip netns`), also /run/netns/<netns>. */
  netns: string;
  address: string;
  /** The veth end left in the machine's namespace, on the bridge: down means the host is cut off. */
  bridgeLeg: string;
}

/**
 * Network namespaces on a bridge of the test's own: the machine's side of the bridge holds the address the
 * bed's servers (sshd, RabbitMQ nodes) listen on; each host is a namespace with a veth pair whose other
 * end sits on the bridge. Names carry a random tag, so parallel beds never meet; traffic only goes to
 * addresses of this bridge's subnet.
 */
export class HostNetwork {
  readonly hosts = new Map<string, SimulatedHost>();
  private readonly cut = new Set<string>();

  private constructor(
    readonly tag: string,
    readonly bridge: string,
    /** First three octets of the /24. */
    private readonly prefix: string,
  ) {}

  /** The address of the machine's side of the bridge (where the bed's servers listen). */
  get serverAddress(): string {
    return `${this.prefix}.1`;
  }

  static async create(): Promise<HostNetwork> {
    requireRoot('the multi-host test bed');
    const tag = randomBytes(3).toString('hex');
    // 10.<a>.<b>.0/24 with random a, b: unlikely to meet another bed's subnet or the machine's own.
    const bytes = randomBytes(2);
    const network = new HostNetwork(tag, `iccbr${tag}`, `10.${100 + (bytes[0]! % 100)}.${bytes[1]!}`);
    await sh('ip', ['link', 'add', network.bridge, 'type', 'bridge']);
    await sh('ip', ['addr', 'add', `${network.serverAddress}/24`, 'dev', network.bridge]);
    await sh('ip', ['link', 'set', network.bridge, 'up']);
    return network;
  }

  async addHost(name: string): Promise<SimulatedHost> {
    if (!/^[a-z0-9]{1,6}$/.test(name)) throw new Error(`host name ${JSON.stringify(name)}: 1-6 of [a-z0-9]`);
    const index = this.hosts.size + 10;
    const host: SimulatedHost = {
      name,
      netns: `icc-${this.tag}-${name}`,
      address: `${this.prefix}.${index}`,
      bridgeLeg: `icc${this.tag}${index}`,
    };
    const inner = `${host.bridgeLeg}i`;
    await sh('ip', ['netns', 'add', host.netns]);
    this.hosts.set(name, host);
    await sh('ip', ['link', 'add', host.bridgeLeg, 'type', 'veth', 'peer', 'name', inner]);
    await sh('ip', ['link', 'set', inner, 'netns', host.netns]);
    await sh('ip', ['link', 'set', host.bridgeLeg, 'master', this.bridge]);
    await sh('ip', ['link', 'set', host.bridgeLeg, 'up']);
    const inNs = (...args: string[]) => sh('ip', ['-n', host.netns, ...args]);
    await inNs('addr', 'add', `${host.address}/24`, 'dev', inner);
    await inNs('link', 'set', inner, 'up');
    await inNs('link', 'set', 'lo', 'up');
    return host;
  }

  host(name: string): SimulatedHost {
    const host = this.hosts.get(name);
    if (!host) throw new Error(`no simulated host ${name}`);
    return host;
  }

  /**
   * The command prefix that runs a program with its traffic leaving from the host's namespace.
   * `nsenter --net` (not `ip netns exec`) keeps the machine's mount namespace, so the host's processes
   * see the FUSE mounts made for it; nsenter execs the program, so the child's pid is the program's.
   */
  launcher(name: string): string[] {
    return ['nsenter', `--net=/run/netns/${this.host(name).netns}`, '--'];
  }

  /**
   * A real partition: the host's leg goes down, so packets in both directions are dropped (no reset):
   * its broker connections and its mount hang until restore() or their own timeouts.
   */
  async cutLink(name: string): Promise<void> {
    await sh('ip', ['link', 'set', this.host(name).bridgeLeg, 'down']);
    this.cut.add(name);
  }

  async restoreLink(name: string): Promise<void> {
    await sh('ip', ['link', 'set', this.host(name).bridgeLeg, 'up']);
    this.cut.delete(name);
  }

  isCut(name: string): boolean {
    return this.cut.has(name);
  }

  /** Removes every namespace and link of this bed (safe to call twice, and after a failed set-up). */
  async teardown(): Promise<void> {
    const errors: string[] = [];
    for (const host of this.hosts.values()) {
      // Deleting the namespace deletes its veth end, and with it the pair.
      await sh('ip', ['netns', 'delete', host.netns]).catch((e: Error) => {
        if (!/No such file/.test(e.message)) errors.push(e.message);
      });
      await sh('ip', ['link', 'delete', host.bridgeLeg]).catch(() => undefined);
    }
    this.hosts.clear();
    await sh('ip', ['link', 'delete', this.bridge]).catch((e: Error) => {
      if (!/Cannot find device/.test(e.message)) errors.push(e.message);
    });
    if (errors.length > 0) throw new Error(`host network teardown: ${errors.join('; ')}`);
  }
}
