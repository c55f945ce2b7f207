import { type BrokerTlsListener, PrivateBroker, newErlangCookie } from '../private-broker';

/**
 * A RabbitMQ cluster of the bed's own: `size` private nodes (test/support/private-broker.ts: own node
 * names, ports, config, env file, data and log folders, HOME) sharing one Erlang cookie of their own, with
 * their AMQP listeners on the bridge address, joined to the first node. It can never reach the machine's
 * default node (another cookie), which is never stopped, reset or clustered.
 */
export class BrokerCluster {
  private readonly stopped = new Set<number>();

  private constructor(readonly nodes: PrivateBroker[]) {}

  /** `tls`: each node also gets an amqps:// listener with these files (its certificate must name listenAddress). */
  static async start(listenAddress: string, size = 3, tls?: BrokerTlsListener): Promise<BrokerCluster> {
    const cookie = newErlangCookie();
    const started = await Promise.allSettled(
      Array.from({ length: size }, () => PrivateBroker.start(180_000, { listenAddress, cookie, tls })),
    );
    const nodes = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const cluster = new BrokerCluster(nodes);
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) {
      await cluster.stop().catch(() => undefined);
      throw failed.reason;
    }
    try {
      for (const node of nodes.slice(1)) {
        await node.ctl(['stop_app']);
        await node.ctl(['join_cluster', nodes[0]!.nodeName]);
        await node.ctl(['start_app']);
        await node.ctl(['await_startup']);
      }
      const status = await nodes[0]!.ctl(['cluster_status', '--formatter', 'json']);
      const running = (JSON.parse(status) as { running_nodes: string[] }).running_nodes;
      if (running.length !== size) throw new Error(`cluster has ${running.length} running nodes: ${status}`);
    } catch (error) {
      await cluster.stop().catch(() => undefined);
      throw new Error(`the bed's RabbitMQ cluster did not form: ${(error as Error).message}`);
    }
    return cluster;
  }

  /** Every node's AMQP URL, in node order. */
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  /** Every node's amqps:// URL, in node order (a cluster started with `tls`). */
  get tlsUrls(): string[] {
    return this.nodes.map((n) => n.tlsUrl());
  }

  /** The node whose AMQP URL this is (the one a conductor was given). */
  indexOf(url: string): number {
    return this.nodes.findIndex((n) => n.url === url);
  }

  /** Stops the node's RabbitMQ application (its listeners close; the Erlang VM and its data stay). */
  async stopNode(index: number): Promise<void> {
    this.stopped.add(index);
    await this.nodes[index]!.ctl(['stop_app']);
  }

  async startNode(index: number): Promise<void> {
    await this.nodes[index]!.ctl(['start_app']);
    await this.nodes[index]!.ctl(['await_startup']);
    this.stopped.delete(index);
  }

  isStopped(index: number): boolean {
    return this.stopped.has(index);
  }

  /** A running node's URL (for the bed's own clients: results tap, requester). */
  runningUrls(): string[] {
    return this.nodes.filter((_, i) => !this.stopped.has(i)).map((n) => n.url);
  }

  /** Stops every node and removes their folders. */
  async stop(): Promise<void> {
    const results = await Promise.allSettled(this.nodes.map((n) => n.stop()));
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
    if (errors.length > 0) throw new Error(`broker cluster stop: ${errors.join('; ')}`);
  }
}
