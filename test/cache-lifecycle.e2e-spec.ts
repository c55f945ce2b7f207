import { promises as fsp } from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import { AdminHttp } from './support/admin-http';
import { conductorPool, errorLines } from './support/conductor-harness';
import { heldLockEntries } from './support/cell-observers';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile } from './support/image-store-fixtures';
import { RawAmqpClient } from './support/raw-amqp-client';
import { TestCell } from './support/test-cell';

const MiB = 1024 * 1024;

describe('cache lifecycle in a conductor', () => {
  let cell: TestCell | undefined;
  let client: RawAmqpClient | undefined;
  const pool = conductorPool(async () => {
    await client?.close();
    await cell?.cleanup();
  });

  beforeEach(() => {
    cell = undefined;
  });

  it('fans one image out to 18 nodes without a source: freshly copied nodes serve the rest, a draining node never does', async () => {
    const destinations = Array.from({ length: 18 }, (_, i) => `fan-${String(i).padStart(2, '0')}`);
    cell = await TestCell.create({ nodes: ['origin', 'drained', ...destinations] });
    client = await RawAmqpClient.open();
    const c = cell;
    const golden = await c.seed('origin', 'golden.qcow2', 8 * MiB);
    // A second holder, marked draining by its operator: it must never be read.
    await fsp.copyFile(c.store.entries.imagePath('origin', 'golden.qcow2'), `${c.root}/.golden`);
    await c.store.imports.importImage('drained', 'golden.qcow2', `${c.root}/.golden`);
    await fsp.rm(`${c.root}/.golden`);
    await fsp.writeFile(c.store.nodeLayout('drained').draining, '');

    const conductor = ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'fanner', COPY_CONCURRENCY: '18', NODE_READ_LIMIT: '4' }),
      90_000,
    );
    await conductor.ready();
    const ids = destinations.map((destination) =>
      client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: `fan-${destination}`,
        imageId: 'golden.qcow2',
        destination,
        sha256: golden.sha256,
      }),
    );
    const replies = await Promise.all(ids.map((id) => client!.finalReply(id, 60_000)));

    const readsPerSource = new Map<string, number>();
    for (const [i, reply] of replies.entries()) {
      expect(reply, destinations[i]).toMatchObject({
        status: 'completed',
        destination: destinations[i],
        sha256: golden.sha256,
      });
      readsPerSource.set(String(reply.source), (readsPerSource.get(String(reply.source)) ?? 0) + 1);
    }
    for (const destination of destinations)
      expect(await sha256OfFile(c.store.entries.imagePath(destination, 'golden.qcow2')), destination).toBe(
        golden.sha256,
      );
    expect(readsPerSource.has('drained')).toBe(false);
    // Several sources; every source other than the origin is a node that received the image in this fan-out.
    expect(readsPerSource.size).toBeGreaterThanOrEqual(3);
    for (const source of readsPerSource.keys()) expect(['origin', ...destinations]).toContain(source);
    expect(readsPerSource.get('origin')!).toBeLessThan(destinations.length);
    expect(await heldLockEntries(c.root)).toEqual([]);
    expect(errorLines([conductor])).toEqual([]);
    console.log(
      `cache-fanout: ${JSON.stringify({ destinations: destinations.length, sources: readsPerSource.size, readsPerSource: Object.fromEntries([...readsPerSource].sort((a, b) => b[1] - a[1])) })}`,
    );
  });

  it('runs the cleaner on schedule when enabled: evicts unused images, keeps pinned and recent ones, stops with the conductor', async () => {
    cell = await TestCell.create({ nodes: ['node-a', 'node-b'] });
    const c = cell;
    const backdate = async (node: string, imageId: string, agoMs: number) => {
      const meta = (await c.store.entries.readMeta(node, imageId))!;
      const at = new Date(Date.now() - agoMs).toISOString();
      await fsp.writeFile(
        c.store.entries.metaPath(node, imageId),
        JSON.stringify({ ...meta, createdAt: at, lastUsedAt: at }),
      );
    };
    for (const [node, imageId, agoMs] of [
      ['node-a', 'old.img', 3 * 3_600_000],
      ['node-a', 'old-pinned.img', 3 * 3_600_000],
      ['node-a', 'recent.img', 60_000],
      ['node-b', 'old-too.img', 5 * 3_600_000],
    ] as const) {
      await c.seed(node, imageId, 64 * 1024);
      await backdate(node, imageId, agoMs);
    }
    await c.store.markers.pin('node-a', 'old-pinned.img');

    const conductor = ConductorProcess.start(
      pool,
      c.conductorEnv({
        CONDUCTOR_ID: 'janitor',
        CLEANER_ENABLED: 'true',
        CLEANER_INTERVAL_MS: '1000',
        CLEANER_MAX_UNUSED_MS: String(2 * 3_600_000),
      }),
      60_000,
    );
    await conductor.ready();
    const round = await conductor.waitForLog(
      (l) => l.msg === 'cache cleaning round done' && Number(l.deleted) === 2,
      'a cleaning round that deleted 2 images',
      20_000,
    );
    expect(round).toMatchObject({ nodes: 2, failedNodes: 0, bytesFreed: 2 * 64 * 1024 });
    expect((await c.store.entries.listImages('node-a')).map((m) => m.imageId)).toEqual([
      'old-pinned.img',
      'recent.img',
    ]);
    expect(await c.store.entries.listImages('node-b')).toEqual([]);
    const cleaned = conductor
      .logs()
      .find(
        (l) =>
          l.msg.startsWith('cache cleaned: node node-a') && Array.isArray(l.deleted) && l.deleted.length > 0,
      );
    expect(cleaned).toMatchObject({ deleted: [{ imageId: 'old.img', why: 'unused' }], keptPinned: 1 });
    // Operators see the schedule on /status: its rounds so far and what the last one did.
    const { cacheCleaner } = await AdminHttp.of(conductor).json<{ cacheCleaner: Record<string, unknown> }>(
      '/status',
    );
    expect(cacheCleaner).toMatchObject({
      enabled: true,
      intervalMs: 1000,
      lastRound: { nodes: 2, failedNodes: 0, aborted: false },
    });
    expect(cacheCleaner.rounds).toBeGreaterThanOrEqual(1);
    // Its calls through the store: at least the listing of the nodes and of each node's entries and pins.
    expect((cacheCleaner.lastRound as { fsOps: number }).fsOps).toBeGreaterThanOrEqual(1 + 2 * 2);

    conductor.signal('SIGTERM');
    expect(await conductor.exited()).toEqual({ code: 0, signal: null });
    expect(await heldLockEntries(c.root)).toEqual([]);
    expect(errorLines([conductor])).toEqual([]);
  });

  it('never deletes anything when the cleaner is not enabled (the default)', async () => {
    cell = await TestCell.create({ nodes: ['node-a'] });
    const c = cell;
    await c.seed('node-a', 'ancient.img', 1024);
    const meta = (await c.store.entries.readMeta('node-a', 'ancient.img'))!;
    await fsp.writeFile(
      c.store.entries.metaPath('node-a', 'ancient.img'),
      JSON.stringify({ ...meta, lastUsedAt: '2001-01-01T00:00:00.000Z' }),
    );
    const conductor = ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'idle', CLEANER_INTERVAL_MS: '1000', CLEANER_MAX_UNUSED_MS: '0' }),
      60_000,
    );
    await conductor.ready();
    // No timer is armed (a fact, unlike a pause that hopes a wrongly armed one would have fired by now).
    const { cacheCleaner } = await AdminHttp.of(conductor).json<{ cacheCleaner: Record<string, unknown> }>(
      '/status',
    );
    expect(cacheCleaner).toMatchObject({
      enabled: false,
      rounds: 0,
      running: false,
      nextRoundAt: null,
      lastRound: null,
    });
    expect(conductor.logs().some((l) => l.msg.startsWith('cache clean'))).toBe(false);
    expect(await c.store.copies.verifiedImage('node-a', 'ancient.img')).toBeDefined();
  });
});
