import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sleep } from './support/async';
import { describeRun, runIcc } from './support/agent-cli';
import { verifyCopies } from './support/cell-observers';
import { ResultsTap, conductorPool } from './support/conductor-harness';
import { BedCell } from './support/hosts/bed-cell';
import { HostBed } from './support/hosts/host-bed';
import { RawAmqpClient } from './support/raw-amqp-client';

const MiB = 1024 * 1024;
const HOUR_MS = 3_600_000;
const HOSTS = ['n1', 'n2'];
const SOURCE = 'node-src';
const DESTINATIONS = Array.from({ length: 8 }, (_, i) => `node-d${i + 1}`);
const ROUNDS = 3;
/** What an images/ folder may hold: an image, its meta and its piece list, nothing else. */
const ENTRY_NAME = /^img-\d+\.raw(\.meta\.json|~pieces\.json)?$/;

/** Every name in a node's images/ that is not an image or its meta (read on the served folder itself). */
async function litterIn(root: string, nodes: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const node of nodes) {
    const names = await fsp.readdir(path.join(root, node, 'images')).catch(() => []);
    for (const name of names) if (!ENTRY_NAME.test(name)) found.push(`${node}/images/${name}`);
  }
  return found;
}

/**
 * Issue 18.1 on the multi-host bed: two hosts, each with its own sshfs mount of one CACHE_ROOT (caches
 * off, no hard_remove), copy many destinations from one source node at once from both hosts' conductors.
 * sshfs hides a file replaced or deleted while open through the same mount as `.fuse_hidden*`; the
 * copies' own reads of the source meta overlap now and then, and the test holds the source meta open
 * through each host's mount for the whole round, so any replace of it by either conductor would be hidden
 * there. A read's last use must replace nothing. Then a hidden file as a dead mount leaves it is planted
 * and `icc cache ls` / `icc cache clean` must account for it.
 */
describe('hosts: copies reading one source through two sshfs mounts', () => {
  let bed: HostBed | undefined;
  let client: RawAmqpClient | undefined;
  let tap: ResultsTap | undefined;
  const pool = conductorPool(async () => {
    await tap?.close();
    await client?.close();
    await bed?.teardown();
  });

  it('leave no .fuse_hidden (or other) litter in images/, and icc cache ls and clean account for one left', async () => {
    bed = await HostBed.create({ hosts: HOSTS, brokers: 1 });
    const nodes = [SOURCE, ...DESTINATIONS];
    const cell = await BedCell.create(bed, pool, nodes);
    const seeds = new Map<string, { sha256: string; size: number; node: string }>();
    for (let round = 1; round <= ROUNDS; round++) {
      const imageId = `img-${round}.raw`;
      seeds.set(imageId, { ...(await cell.seed(SOURCE, imageId, 2 * MiB)), node: SOURCE });
    }
    const brokerUrl = bed.brokers().urls[0]!;
    client = await RawAmqpClient.open(brokerUrl);
    tap = await ResultsTap.open(cell.topology, [brokerUrl]);
    await Promise.all(HOSTS.map((host) => cell.start(host, `litter-${host}`)));

    // Watched on the served folder during the rounds: sshfs removes a hidden file once it is closed.
    const seen = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        for (const name of await litterIn(bed!.root, nodes)) seen.add(name);
        await sleep(50);
      }
    })();
    const requested = new Set<string>();
    try {
      for (let round = 1; round <= ROUNDS; round++) {
        const imageId = `img-${round}.raw`;
        const meta = cell.store.entries.metaPath(SOURCE, imageId).slice(bed.root.length);
        const readers = await Promise.all(
          HOSTS.map((h) => fsp.open(path.join(bed!.cacheRoot(h), meta), 'r')),
        );
        try {
          const sent = DESTINATIONS.map((destination) => {
            requested.add(`${imageId}|${destination}`);
            const requestId = `litter-${round}-${destination}`;
            const body = { v: 1, requestId, imageId, destination, source: SOURCE };
            return { requestId, correlationId: client!.send(cell.topology.requestQueue.name, body) };
          });
          for (const s of sent)
            expect(await client.finalReply(s.correlationId, 60_000), s.requestId).toMatchObject({
              status: 'completed',
            });
          // Both hosts' conductors read the source in every round (the broker shares the copies out).
          const finals = await tap.waitForFinal(
            sent.map((s) => s.requestId),
            30_000,
          );
          expect(new Set([...finals.values()].map((r) => r.conductorId)).size, `round ${round}`).toBe(2);
          // Before the readers close: a meta replaced under them would still be hidden now.
          expect(await litterIn(bed.root, nodes), `round ${round}, source meta held open`).toEqual([]);
        } finally {
          for (const reader of readers) await reader.close();
        }
      }
    } finally {
      watching = false;
      await watcher;
    }
    expect([...seen], 'litter seen in images/ during the rounds').toEqual([]);
    expect(await litterIn(bed.root, nodes), 'litter after the rounds').toEqual([]);
    const violations: string[] = [];
    expect(await verifyCopies(cell.store, requested, seeds, violations)).toBe(0);
    expect(violations).toEqual([]);

    // A hidden file a mount that died left behind (a meta's bytes, as sshfs keeps them), and one just
    // hidden (its file may still be open somewhere). Seen through host n1's mount, as an operator there would.
    const images = cell.store.nodeLayout(SOURCE).images;
    const [old, fresh] = ['.fuse_hidden0000000a00000001', '.fuse_hidden0000000b00000002'];
    for (const name of [old, fresh])
      await fsp.copyFile(cell.store.entries.metaPath(SOURCE, 'img-1.raw'), path.join(images, name));
    // sftp carries no ctime: through a mount sshfs shows the mtime as ctime, the "hidden at" the cleaner
    // judges, so the backdated one looks hidden two hours ago there.
    const twoHoursAgo = new Date(Date.now() - 2 * HOUR_MS);
    await fsp.utimes(path.join(images, old), twoHoursAgo, twoHoursAgo);
    const root = bed.cacheRoot('n1');

    const lsArgs = ['cache', 'ls', SOURCE, '--cache-root', root, '--json'];
    const ls = await runIcc(lsArgs);
    expect(ls.code, describeRun(lsArgs, ls)).toBe(0);
    const listing = JSON.parse(ls.stdout) as {
      images: { imageId: string }[];
      litter: { name: string; bytes: number }[];
    };
    expect(listing.litter?.map((l) => l.name)).toEqual([old, fresh]);
    expect(listing.litter.every((l) => l.bytes > 0)).toBe(true);
    expect(listing.images.map((e) => e.imageId).sort()).toEqual([...seeds.keys()]);

    const cleanArgs = ['cache', 'clean', SOURCE, '--cache-root', root, '--json'];
    const clean = await runIcc(cleanArgs);
    expect(clean.code, describeRun(cleanArgs, clean)).toBe(0);
    const report = JSON.parse(clean.stdout) as { litterRemoved: string[]; deleted: unknown[] };
    // Only the one hidden longer than the grace time (1 h by default); no image goes with it.
    expect(report.litterRemoved).toEqual([old]);
    expect(report.deleted).toEqual([]);
    expect(await litterIn(bed.root, [SOURCE])).toEqual([`${SOURCE}/images/${fresh}`]);
  }, 180_000);
});
