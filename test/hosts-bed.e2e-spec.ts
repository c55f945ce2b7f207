import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { connect } from 'amqplib';
import { afterAll, describe, expect, it } from 'vitest';
import { HostBed } from './support/hosts/host-bed';
import { sh } from './support/hosts/host-network';

/*
 * The multi-host test bed itself (test/support/hosts, issue 13): hosts in network namespaces on a bridge,
 * one folder mounted by each through sshfs from its own namespace, a RabbitMQ cluster of the bed's own,
 * and the fault injectors the across-hosts campaign uses. Needs root (CI runs as root).
 */

/** Can a process on `host` open a TCP connection to `address:port` within `timeoutMs`? */
async function reaches(bed: HostBed, host: string, url: string, timeoutMs = 3_000): Promise<boolean> {
  const { hostname, port } = new URL(url);
  const script =
    `const s=require('net').connect(${port},'${hostname}',()=>{process.stdout.write('ok');process.exit(0)});` +
    `s.on('error',()=>process.exit(3));setTimeout(()=>process.exit(4),${timeoutMs});`;
  const [command, ...prefix] = bed.launcher(host);
  return sh(command!, [...prefix, process.execPath, '-e', script], timeoutMs + 5_000).then(
    (out) => out === 'ok',
    () => false,
  );
}

describe('the multi-host test bed', () => {
  let bed: HostBed | undefined;
  afterAll(async () => {
    await bed?.teardown();
  }, 120_000);

  it('gives each host its own mount of one folder, changes visible across mounts at once', async () => {
    bed = await HostBed.create({ hosts: ['a', 'b'], brokers: 0 });
    const [a, b] = [bed.cacheRoot('a'), bed.cacheRoot('b')];
    expect(a).not.toBe(b);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    for (const dir of [a, b]) expect(mounts).toMatch(new RegExp(` ${dir} .* fuse\\.sshfs `));
    await fsp.writeFile(path.join(a, 'hello'), 'from a');
    expect(await fsp.readFile(path.join(b, 'hello'), 'utf8')).toBe('from a');
    expect(await fsp.readFile(path.join(bed.root, 'hello'), 'utf8')).toBe('from a');
    // Attribute caching is off: an mtime set through one mount is what the other mount sees next.
    const when = new Date(Date.now() - 3_600_000);
    await fsp.utimes(path.join(a, 'hello'), when, when);
    expect(Math.floor((await fsp.stat(path.join(b, 'hello'))).mtimeMs / 1000)).toBe(
      Math.floor(when.getTime() / 1000),
    );
    // A killed mount leaves an empty mount point; a re-made one sees the folder again.
    await bed.killMount('b');
    await expect(fsp.readFile(path.join(b, 'hello'), 'utf8')).rejects.toThrow(/ENOENT|ENOTCONN/);
    await bed.remakeMount('b');
    expect(await fsp.readFile(path.join(b, 'hello'), 'utf8')).toBe('from a');
  });

  it('cuts a host off the broker and the mount together, and restores both', async () => {
    await bed?.teardown();
    bed = await HostBed.create({ hosts: ['a', 'b'], brokers: 3 });
    const cluster = bed.brokers();
    expect(cluster.urls).toHaveLength(3);
    for (const url of cluster.urls) {
      expect(await reaches(bed, 'a', url)).toBe(true);
      expect(new URL(url).hostname).toBe(bed.network.serverAddress);
    }
    await bed.cutLink('a');
    expect(await reaches(bed, 'a', cluster.urls[0]!)).toBe(false);
    expect(await reaches(bed, 'b', cluster.urls[0]!)).toBe(true);
    // The cut host's mount hangs (no answer within 2 s); the other host's does not.
    const hung = await Promise.race([
      fsp.stat(path.join(bed.cacheRoot('a'), '.')).then(
        () => 'answered',
        () => 'failed',
      ),
      new Promise((r) => setTimeout(() => r('hung'), 2_000)),
    ]);
    expect(hung).toBe('hung');
    await fsp.writeFile(path.join(bed.cacheRoot('b'), 'during-cut'), 'b');
    await bed.restoreLink('a');
    expect(await reaches(bed, 'a', cluster.urls[0]!)).toBe(true);
    expect(await fsp.readFile(path.join(bed.cacheRoot('a'), 'during-cut'), 'utf8')).toBe('b');
    expect(bed.faults.map((f) => f.kind)).toEqual(['link-cut', 'link-restored']);
  });

  it('runs a 3-node cluster of its own whose quorum queue survives the loss of a node', async () => {
    const cluster = bed!.brokers();
    const queue = `icc-bed-${Date.now()}`;
    const publisher = await connect(cluster.urls[1]!);
    const channel = await publisher.createConfirmChannel();
    await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    channel.sendToQueue(queue, Buffer.from('kept'), { persistent: true });
    await channel.waitForConfirms();
    await publisher.close();
    await bed!.stopBrokerNode(0);
    expect(await reaches(bed!, 'a', cluster.urls[0]!)).toBe(false);
    const consumer = await connect(cluster.urls[2]!);
    const read = await consumer.createChannel();
    let message: false | { content: Buffer } = false;
    for (let i = 0; i < 100 && !message; i++) {
      message = await read.get(queue, { noAck: true });
      if (!message) await new Promise((r) => setTimeout(r, 100));
    }
    expect(message && message.content.toString()).toBe('kept');
    await read.deleteQueue(queue);
    await consumer.close();
    await bed!.startBrokerNode(0);
    expect(await reaches(bed!, 'a', cluster.urls[0]!)).toBe(true);
  });

  it('leaves no namespace, link, mount or process behind after teardown', async () => {
    const done = bed!;
    bed = undefined;
    const { tag, bridge } = done.network;
    const mountsBefore = [...done.hosts].map((h) => done.cacheRoot(h));
    await done.teardown();
    expect(await sh('ip', ['netns', 'list'])).not.toContain(`icc-${tag}-`);
    expect(await sh('ip', ['-br', 'link'])).not.toContain(bridge);
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
    for (const dir of mountsBefore) expect(mounts).not.toContain(` ${dir} `);
    await expect(fsp.stat(done.base)).rejects.toThrow(/ENOENT/);
  });
});
