import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { makeTempDir, removeDir } from '../temp-dirs';
import type { BrokerCluster } from './broker-cluster';
import { HostNetwork, requireRoot } from './host-network';
import type { HostShare } from '../shared-fs/fuse-clients';
import { type SharedFsKind, type SharedFsOptions, startSharedFs } from '../shared-fs/shared-fs-bed';
import { SshfsShare } from './sshfs-share';
import { TestCa } from '../test-pki';

/** What the hosts share: a folder over sshfs (the default), or a CephFS or GlusterFS of the bed's own. */
export type HostBedFs = 'sshfs' | SharedFsKind;

/** The client name of the machine's own mount of a CephFS or GlusterFS bed. */
const OBSERVER = 'observer';

/** One fault the bed injected, on the machine's monotonic clock (ms since the bed started). */
export interface BedFault {
  kind:
    | 'link-cut'
    | 'link-restored'
    | 'mount-killed'
    | 'mount-remade'
    | 'mount-frozen'
    | 'mount-thawed'
    | 'broker-stopped'
    | 'broker-started';
  target: string;
  atMs: number;
}

/**
 * Several simulated hosts on this machine (issue 13's test bed): network namespaces on a bridge, one
 * shared folder served by an sshd of the bed's own and mounted by each host through its own namespace
 * (sshfs, caching off), and a RabbitMQ cluster of its own listening on the bridge address. Fault
 * injectors: cut/restore a host's link (broker and mount together), kill/re-make a host's mount,
 * freeze/thaw it (its calls wait in the kernel), stop/start a cluster node. `teardown()` undoes everything, also after a failed set-up.
 */
export class HostBed {
  readonly faults: BedFault[] = [];
  private readonly started = performance.now();

  private constructor(
    readonly base: string,
    /** The served folder itself, as the machine sees it (for observers that are not a host). */
    readonly root: string,
    readonly network: HostNetwork,
    readonly share: HostShare,
    readonly cluster: BrokerCluster | undefined,
    /** With `tls`: the conductors' settings for the cluster's amqps:// listeners (CA, client certificate). */
    readonly brokerTlsEnv: Record<string, string> | undefined,
  ) {}

  /**
   * `hosts`: names of the simulated hosts (each gets a namespace and a mount); `brokers`: cluster size
   * (0: no cluster); `tls`: the cluster's nodes also listen on amqps:// with a certificate of a CA the bed
   * makes (for the bridge address), requiring a client certificate (mutual TLS): see brokerTlsEnv;
   * `fs`: the shared file system, its servers on the bridge (default sshfs).
   */
  static async create(options: {
    hosts: string[];
    brokers?: number;
    tls?: boolean;
    fs?: HostBedFs;
    fsOptions?: SharedFsOptions;
  }): Promise<HostBed> {
    requireRoot('the multi-host test bed');
    const base = await makeTempDir('hosts');
    let root = path.join(base, 'served');
    await fsp.mkdir(root);
    let network: HostNetwork | undefined;
    let share: HostShare | undefined;
    let cluster: BrokerCluster | undefined;
    let tls: Awaited<ReturnType<typeof bedPki>> | undefined;
    try {
      network = await HostNetwork.create();
      for (const host of options.hosts) await network.addHost(host);
      const fs = options.fs ?? 'sshfs';
      if (fs === 'sshfs') share = await SshfsShare.start(network, root, base);
      else {
        // The machine itself mounts the file system too (client `observer`, outside every namespace, so
        // no cut link takes it away): that mount is the bed's root for seeding and observers.
        const hosts = network;
        const place = {
          serverAddress: hosts.serverAddress,
          launcher: (host: string) => (host === OBSERVER ? [] : hosts.launcher(host)),
        };
        share = await startSharedFs(fs, place, base, options.fsOptions);
        root = await share.mount(OBSERVER);
      }
      for (const host of options.hosts) await share.mount(host);
      // Loaded only when wanted: private-broker.ts brings vitest hooks, which a bench runner cannot load.
      if ((options.brokers ?? 3) > 0) {
        const { BrokerCluster } = await import('./broker-cluster');
        if (options.tls) tls = await bedPki(path.join(base, 'pki'), network.serverAddress);
        cluster = await BrokerCluster.start(network.serverAddress, options.brokers, tls?.listener);
      }
    } catch (error) {
      await cluster?.stop().catch(() => undefined);
      await share?.stop().catch(() => undefined);
      await network?.teardown().catch(() => undefined);
      await removeDir(base).catch(() => undefined);
      throw error;
    }
    return new HostBed(base, root, network, share, cluster, tls?.conductorEnv);
  }

  get hosts(): string[] {
    return [...this.network.hosts.keys()];
  }

  /** The host's view of the shared folder: its CACHE_ROOT. */
  cacheRoot(host: string): string {
    return this.share.mountPoint(host);
  }

  /** The address a host's own servers (a conductor's admin endpoint) are reached at. */
  address(host: string): string {
    return this.network.host(host).address;
  }

  /** Command prefix running a program on the host (its traffic leaves from the host's namespace). */
  launcher(host: string): string[] {
    return this.network.launcher(host);
  }

  brokers(): BrokerCluster {
    if (!this.cluster) throw new Error('this bed was made without a broker cluster');
    return this.cluster;
  }

  private note(kind: BedFault['kind'], target: string): void {
    this.faults.push({ kind, target, atMs: Math.round(performance.now() - this.started) });
  }

  async cutLink(host: string): Promise<void> {
    await this.network.cutLink(host);
    this.note('link-cut', host);
  }

  async restoreLink(host: string): Promise<void> {
    await this.network.restoreLink(host);
    this.note('link-restored', host);
  }

  async killMount(host: string): Promise<void> {
    await this.share.killMount(host);
    this.note('mount-killed', host);
  }

  async remakeMount(host: string): Promise<void> {
    await this.share.mount(host);
    this.note('mount-remade', host);
  }

  freezeMount(host: string): void {
    this.share.freezeMount(host);
    this.note('mount-frozen', host);
  }

  thawMount(host: string): void {
    this.share.thawMount(host);
    this.note('mount-thawed', host);
  }

  /** Whether the host's mount is made, answering, and its link up: what a conductor there needs to start. */
  mountUsable(host: string): boolean {
    return this.share.isMounted(host) && !this.share.isFrozen(host) && !this.network.isCut(host);
  }

  async stopBrokerNode(index: number): Promise<void> {
    await this.brokers().stopNode(index);
    this.note('broker-stopped', `broker-${index}`);
  }

  async startBrokerNode(index: number): Promise<void> {
    await this.brokers().startNode(index);
    this.note('broker-started', `broker-${index}`);
  }

  /**
   * Undoes everything: links back up (so mounts and sessions can end), every mount and sshfs client, the
   * sshd, the cluster, the namespaces and the bridge, then the bed's folder. Kill the hosts' processes
   * first (their pool's killAll). Collects errors and throws them together at the end.
   */
  async teardown(): Promise<void> {
    const errors: string[] = [];
    const step = async (what: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (error) {
        errors.push(`${what}: ${(error as Error).message}`);
      }
    };
    for (const host of this.hosts)
      if (this.network.isCut(host)) await step(`restore ${host}`, () => this.network.restoreLink(host));
    await step(`${this.share.kind} share`, () => this.share.stop());
    if (this.cluster) await step('broker cluster', () => this.cluster!.stop());
    await step('host network', () => this.network.teardown());
    await step('bed folder', () => removeDir(this.base));
    if (errors.length > 0) throw new Error(`host bed teardown:\n${errors.join('\n')}`);
  }
}

/** The bed's CA, the brokers' certificate for `address`, and a client certificate for the conductors. */
async function bedPki(dir: string, address: string) {
  const ca = await TestCa.create(dir, 'bed-ca');
  const server = await ca.issue({ commonName: 'bed-broker', ips: [address] });
  const client = await ca.issue({ commonName: 'bed-conductor', usage: 'client' });
  return {
    listener: { caFile: ca.cert, certFile: server.cert, keyFile: server.key, requireClientCert: true },
    conductorEnv: {
      AMQP_TLS_CA_FILE: ca.cert,
      AMQP_TLS_CERT_FILE: client.cert,
      AMQP_TLS_KEY_FILE: client.key,
    },
  };
}
