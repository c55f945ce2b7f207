import { describe, expect, it } from 'vitest';
import {
  answeredLines,
  answersLogged,
  conductorTestbed,
  copiesPerDestination,
  errorLines,
} from './support/conductor-harness';
import { heldLockEntries } from './support/cell-observers';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile } from './support/image-store-fixtures';

const MiB = 1024 * 1024;
const NODES = Array.from({ length: 8 }, (_, i) => `node-${i}`);
const IMAGES = Array.from({ length: 6 }, (_, i) => `img-${i}.qcow2`);

describe('conductor: two conductors, many requests over many node pairs', () => {
  const bed = conductorTestbed(NODES);
  const pool = bed.pool;

  it('answers every request, copies each destination exactly once, coalesces duplicates and leaves nothing behind', async () => {
    const c = bed.cell!;
    // Image i lives on node i only; every other node asks for it (a fan-out with no source given).
    const seeds = new Map<string, { sha256: string; size: number; node: string }>();
    for (const [i, imageId] of IMAGES.entries())
      seeds.set(imageId, { ...(await c.seed(NODES[i]!, imageId, (2 + (i % 3)) * MiB)), node: NODES[i]! });

    const conductors = [
      ConductorProcess.start(pool, c.conductorEnv({ CONDUCTOR_ID: 'load-a' }), 150_000),
      ConductorProcess.start(pool, c.conductorEnv({ CONDUCTOR_ID: 'load-b' }), 150_000),
    ];
    await Promise.all(conductors.map((p) => p.ready()));

    // Interleaved so both conductors see every image at once: for each destination rank, every image.
    const pairs: Array<{ imageId: string; destination: string }> = [];
    for (let rank = 1; rank < NODES.length; rank++)
      for (const [i, imageId] of IMAGES.entries())
        pairs.push({ imageId, destination: NODES[(i + rank) % NODES.length]! });

    const sent: Array<{
      correlationId: string;
      requestId: string;
      imageId: string;
      destination: string;
      kind: string;
    }> = [];
    const send = (body: Record<string, unknown>, kind: string) => {
      const correlationId = bed.client!.send(c.topology.requestQueue.name, body, {
        messageId: body.requestId as string,
      });
      sent.push({
        correlationId,
        requestId: body.requestId as string,
        imageId: body.imageId as string,
        destination: body.destination as string,
        kind,
      });
    };
    for (const [n, { imageId, destination }] of pairs.entries()) {
      const seed = seeds.get(imageId)!;
      // Half the images are requested with their checksum and size, half trust the source's meta.
      const expected = Number(imageId.slice(4, 5)) % 2 === 0 ? { sha256: seed.sha256, size: seed.size } : {};
      const body = { v: 1, imageId, destination, ...expected };
      // An exact duplicate published back to back: same image and destination, another requestId.
      send({ ...body, requestId: `req-${n}-a` }, 'fan-out');
      send({ ...body, requestId: `req-${n}-b` }, 'duplicate');
      // Every other pair also gets a request naming the source explicitly.
      if (n % 2 === 0) send({ ...body, requestId: `req-${n}-c`, source: seed.node }, 'explicit-source');
    }
    expect(sent.length).toBeGreaterThanOrEqual(100);

    const replies = await Promise.all(sent.map((s) => bed.client!.finalReply(s.correlationId, 120_000)));
    for (const [i, reply] of replies.entries()) {
      expect(reply, `request ${sent[i]!.requestId}`).toMatchObject({
        requestId: sent[i]!.requestId,
        imageId: sent[i]!.imageId,
        destination: sent[i]!.destination,
      });
      expect(
        ['completed', 'already-present'],
        `request ${sent[i]!.requestId}: ${JSON.stringify(reply)}`,
      ).toContain(reply.status);
    }

    // Every destination holds the image, hashed here independently of the conductor.
    for (const { imageId, destination } of pairs) {
      expect(
        await sha256OfFile(c.store.entries.imagePath(destination, imageId)),
        `${imageId} on ${destination}`,
      ).toBe(seeds.get(imageId)!.sha256);
    }

    // Exactly one real copy per destination, across both conductors.
    await answersLogged(
      conductors,
      sent.map((s) => s.requestId),
    );
    const copies = copiesPerDestination(conductors);
    const expectedCopies = new Map(pairs.map((p) => [`${p.imageId} -> ${p.destination}`, 1]));
    expect(Object.fromEntries(copies)).toEqual(Object.fromEntries(expectedCopies));
    expect(await c.tmpLeftovers()).toEqual([]);
    expect(await heldLockEntries(c.root)).toEqual([]);
    for (const p of conductors) expect(p.child.process.exitCode).toBeNull();
    expect(errorLines(conductors)).toEqual([]);

    const lines = answeredLines(conductors);
    const count = (f: (l: (typeof lines)[number]) => boolean) => lines.filter(f).length;
    const summary = {
      requests: sent.length,
      pairs: pairs.length,
      answered: lines.length,
      copies: [...copies.values()].reduce((a, b) => a + b, 0),
      completedCoalesced: count((l) => l.status === 'completed' && l.coalesced === true),
      alreadyPresent: count((l) => l.status === 'already-present'),
      // The fan-out spreads its reads: copies made from a node that had received the image itself.
      copiedFromNonSeed: count(
        (l) =>
          l.status === 'completed' &&
          l.coalesced === false &&
          l.source !== seeds.get(String(l.imageId))!.node,
      ),
      byConductor: Object.fromEntries(
        conductors.map((p, i) => [`load-${'ab'[i]}`, count((l) => l.conductorId === `load-${'ab'[i]}`)]),
      ),
    };
    console.log(`conductor-load: ${JSON.stringify(summary)}`);
  });
});
