import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { HEADER_REASON } from '@app/contracts';
import {
  type DeadLetter,
  type Result,
  ResultsTap,
  conductorTestbed,
  takeDeadLetters,
} from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { listDir } from './support/image-store-fixtures';
import { TestCell } from './support/test-cell';

const MiB = 1024 * 1024;
const IMAGE = 'ubuntu.qcow2';

/*
 * Issue 11, items 6 and 7: a request cannot create a node, an already-present result reports the image,
 * and a meta file that fails validation is named in the log (once) and in the failure.
 */
describe('conductor: registered nodes, already-present results, invalid meta files', () => {
  let tap: ResultsTap | undefined;
  const bed = conductorTestbed(['node-a', 'node-b'], {
    nested: true,
    cleanup: async () => {
      await tap?.close();
    },
  });
  const pool = bed.pool;

  beforeEach(async () => {
    tap = await ResultsTap.open(bed.cell!.topology);
  });

  it('answers a request for an unknown node UNKNOWN_NODE, dead-letters it once, and creates no folder', async () => {
    const c = bed.cell!;
    const image = await c.seed('node-a', IMAGE, 1 * MiB);
    // A folder with an image but no marker (a node removed with icc node rm, or made by hand) is unknown too.
    await fsp.mkdir(path.join(c.root, 'node-ghost', 'images'), { recursive: true });
    await fsp.copyFile(
      c.store.entries.imagePath('node-a', IMAGE),
      path.join(c.root, 'node-ghost', 'images', IMAGE),
    );
    await fsp.copyFile(
      c.store.entries.metaPath('node-a', IMAGE),
      c.store.entries.metaPath('node-ghost', IMAGE),
    );
    await ConductorProcess.start(pool, c.conductorEnv({ CONDUCTOR_ID: 'nodes' }), 90_000).ready();
    const before = await treeOf(c.root);

    const cases = [
      {
        name: 'typo-destination',
        body: { imageId: IMAGE, destination: 'node-bb', source: 'node-a' },
        detail: 'destination: node node-bb is not registered',
      },
      {
        name: 'typo-destination-any-source',
        body: { imageId: IMAGE, destination: 'node-x1' },
        detail: 'destination: node node-x1 is not registered',
      },
      {
        name: 'unknown-source',
        body: { imageId: IMAGE, destination: 'node-b', source: 'node-ghost' },
        detail: 'source: node node-ghost is not registered',
      },
    ];
    const sent = cases.map((k) => ({
      k,
      correlationId: bed.client!.send(
        c.topology.requestQueue.name,
        { v: 1, requestId: k.name, ...k.body },
        { messageId: k.name },
      ),
    }));
    for (const { k, correlationId } of sent) {
      const reply = await bed.client!.finalReply(correlationId, 30_000);
      expect(reply, k.name).toMatchObject({
        requestId: k.name,
        status: 'failed',
        reason: 'UNKNOWN_NODE',
        retryable: false,
      });
      expect(String(reply.detail), k.name).toContain(k.detail);
    }
    await tap!.waitForFinal(
      cases.map((k) => k.name),
      30_000,
    );

    // A dead letter is published right after the answer: collect until each case has one.
    const dead = await deadLettersUntil(c, (d) => cases.every((k) => d.some((x) => x.messageId === k.name)));
    for (const k of cases) {
      const copies = dead.filter((d) => d.messageId === k.name);
      expect(copies.length, `dead letters of ${k.name}`).toBe(1);
      expect(copies[0]!.headers[HEADER_REASON]).toBe('UNKNOWN_NODE');
    }
    expect(dead.length).toBe(cases.length);
    expect(tap!.results.filter((r: Result) => r.retryable === true)).toEqual([]);

    // Not a folder, not a lock folder: nothing appeared anywhere under CACHE_ROOT (nor beside it), but
    // the record of each request's final answer (docs/cache-layout.md, "Final answers") and the
    // conductors' own records (rewritten every beat, docs/upgrades.md).
    const ownRecords = (e: string) => e.startsWith('.icc-conductors/');
    const after = await treeOf(c.root);
    expect(after.filter((e) => !e.startsWith('.icc-answers/') && !ownRecords(e))).toEqual(
      before.filter((e) => !ownRecords(e)),
    );
    const answers = after.filter((e) => e.startsWith('.icc-answers/') && e.endsWith('.json'));
    expect(answers.map((e) => path.basename(e, '.json')).sort()).toEqual(cases.map((k) => k.name).sort());
    // (.icc-header-key: the cell's retry-header key, made by the first conductor; .icc-conductors: their
    // records; .rounds: the round leases' folder, made at start.)
    expect((await fsp.readdir(c.root)).sort()).toEqual([
      '.icc-answers',
      '.icc-conductors',
      '.icc-header-key',
      '.rounds',
      'node-a',
      'node-b',
      'node-ghost',
    ]);
    expect(await fsp.readdir(c.parent!)).toEqual(['cache']);

    // A registered node serves as usual; the unregistered holder was never chosen as a source.
    const good = bed.client!.send(c.topology.requestQueue.name, {
      v: 1,
      requestId: 'good',
      imageId: IMAGE,
      destination: 'node-b',
      sha256: image.sha256,
    });
    expect(await bed.client!.finalReply(good, 30_000)).toMatchObject({
      status: 'completed',
      source: 'node-a',
    });
    expect(await takeDeadLetters(c.topology)).toEqual([]); // once each: no second copy came later
  });

  it('reports the size and sha256 of the image at the destination when it is already present', async () => {
    const c = bed.cell!;
    const image = await c.seed('node-a', IMAGE, 1 * MiB + 7);
    await ConductorProcess.start(pool, c.conductorEnv({ CONDUCTOR_ID: 'present' }), 90_000).ready();
    const request = (requestId: string, extra = {}) =>
      bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId,
        imageId: IMAGE,
        destination: 'node-b',
        ...extra,
      });
    expect(await bed.client!.finalReply(request('first'), 30_000)).toMatchObject({
      status: 'completed',
      bytes: image.size,
      sha256: image.sha256,
    });
    const expected = {
      status: 'already-present',
      bytes: image.size,
      sha256: image.sha256,
      destination: 'node-b',
    };
    expect(await bed.client!.finalReply(request('again'), 30_000)).toMatchObject(expected);
    expect(
      await bed.client!.finalReply(
        request('again-named', { source: 'node-a', sha256: image.sha256 }),
        30_000,
      ),
    ).toMatchObject(expected);
  });

  it('logs a meta file that fails validation once, naming the file and the field, and says so in the failure', async () => {
    const c = bed.cell!;
    await c.seed('node-a', IMAGE, 1 * MiB);
    const metaPath = c.store.entries.metaPath('node-a', IMAGE);
    const { lastUsedAt: _dropped, ...meta } = JSON.parse(await fsp.readFile(metaPath, 'utf8')) as Record<
      string,
      unknown
    >;
    await fsp.writeFile(metaPath, JSON.stringify(meta));
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'meta' }),
      90_000,
    ).ready();

    const named = bed.client!.send(c.topology.requestQueue.name, {
      v: 1,
      requestId: 'named',
      imageId: IMAGE,
      destination: 'node-b',
      source: 'node-a',
    });
    const reply = await bed.client!.finalReply(named, 30_000);
    expect(reply).toMatchObject({ status: 'failed', reason: 'SOURCE_MISSING' });
    expect(String(reply.detail)).toContain('meta file invalid: lastUsedAt: ');
    for (let i = 0; i < 3; i++) {
      const again = bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: `any-${i}`,
        imageId: IMAGE,
        destination: 'node-b',
      });
      expect(await bed.client!.finalReply(again, 30_000)).toMatchObject({
        status: 'failed',
        reason: 'SOURCE_MISSING',
      });
    }
    const warnings = conductor.logs().filter((l) => l.level === 40 && l.msg.includes(metaPath));
    expect(warnings.map((l) => l.msg)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^invalid file ${escape(metaPath)}: lastUsedAt: .*; image ${escape(IMAGE)} on node node-a is not used`,
        ),
      ),
    ]);
  });
});

async function deadLettersUntil(
  c: TestCell,
  done: (dead: DeadLetter[]) => boolean,
  timeoutMs = 30_000,
): Promise<DeadLetter[]> {
  const dead: DeadLetter[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    dead.push(...(await takeDeadLetters(c.topology)));
    if (done(dead)) return dead;
    if (Date.now() > deadline)
      throw new Error(`dead letters so far: ${JSON.stringify(dead.map((d) => d.messageId))}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Every path under `dir`, folders marked with a trailing '/'. */
async function treeOf(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const name of await listDir(dir)) {
    const full = path.join(dir, name);
    if ((await fsp.lstat(full)).isDirectory())
      out.push(`${prefix}${name}/`, ...(await treeOf(full, `${prefix}${name}/`)));
    else out.push(`${prefix}${name}`);
  }
  return out;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
