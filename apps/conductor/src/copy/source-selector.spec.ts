import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ReasonError } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { ImageHolderIndex, SETTLE_MS } from './holder-index';
import { type PickedSource, SourceSelector } from './source-selector';

describe('SourceSelector', () => {
  let root: string;
  let store: ImageStore;
  let sha256: string;
  let seedFile: string;
  let index: ImageHolderIndex;
  let scans: number;

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-selector-'));
    store = new ImageStore({ root, fsync: false });
    seedFile = path.join(os.tmpdir(), `icc-selector-seed-${process.pid}-${Math.random()}`);
    await fsp.writeFile(seedFile, 'image bytes');
    for (const node of ['node-a', 'node-b', 'node-c', 'node-d', 'node-e'])
      await store.markers.registerNode(node, 'selector.spec');
    for (const node of ['node-a', 'node-c'])
      sha256 = (await store.imports.importImage(node, 'img', seedFile)).sha256;
    scans = 0;
    const counting = {
      rootStamp: () => (scans++, store.entries.rootStamp()),
      imagesFolderStamp: (node: string) => store.entries.imagesFolderStamp(node),
      listNodes: () => store.entries.listNodes(),
      listImageIds: (node: string) => store.entries.listImageIds(node),
    };
    index = new ImageHolderIndex(counting, { ttlMs: 60_000, missRescanMs: 0 });
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
    await fsp.rm(seedFile, { force: true });
  });

  const selector = (readLimit = 4, recheckMs?: number) =>
    new SourceSelector(store, { index, readLimit, conductorId: 'me', random: () => 0.5, recheckMs });
  const pick = (s: SourceSelector, job: Parameters<SourceSelector['acquire']>[0], timeoutMs = 1000) =>
    s.acquire(job, { timeoutMs });

  it('picks the holder with the fewest reads running here, and holds a read slot until released', async () => {
    const s = selector();
    const first = await pick(s, { imageId: 'img', destination: 'node-b', sha256 });
    const second = await pick(s, { imageId: 'img', destination: 'node-b' });
    expect(new Set([first.node, second.node])).toEqual(new Set(['node-a', 'node-c']));
    expect(first.slotWaitMs).toBe(0); // a free slot at once: the whole LOCK_WAIT_MS is left for the locks
    expect(s.reads(first.node)).toBe(1);
    first.release();
    first.release(); // once only
    expect(s.reads(first.node)).toBe(0);
    expect((await pick(s, { imageId: 'img', destination: 'node-b' })).node).toBe(first.node);
  });

  it('gives a freed read slot to an interactive copy before a background copy that waited longer', async () => {
    const s = selector(1, 10_000);
    const job = { imageId: 'img', destination: 'node-b', source: 'node-a' } as const;
    const holder = await pick(s, job);
    const order: string[] = [];
    const take = (priority: 'interactive' | 'background') =>
      pick(s, { ...job, priority }, 20_000).then((picked) => {
        order.push(priority);
        return picked;
      });
    const background = take('background');
    await new Promise((r) => setTimeout(r, 50));
    const interactive = take('interactive');
    await new Promise((r) => setTimeout(r, 50));
    expect(order).toEqual([]);

    holder.release();
    (await interactive).release();
    (await background).release();
    expect(order).toEqual(['interactive', 'background']);
  });

  it('gives a per-piece read slot to a background copy only while no interactive copy waits for the node', async () => {
    const s = selector(1, 10_000);
    const job = { imageId: 'img', destination: 'node-b', source: 'node-a' } as const;
    const holder = await pick(s, job);
    const waiting = pick(s, { ...job, priority: 'interactive' }, 20_000);
    await new Promise((r) => setTimeout(r, 50));
    holder.release();
    // The slot is free at this instant, but an interactive copy waits for node-a: not for a background piece.
    expect(s.tryTakePieceSlot('node-a', 'background')).toBeUndefined();
    (await waiting).release();
    const slot = s.tryTakePieceSlot('node-a', 'background');
    expect(slot).toBeTypeOf('function');
    slot!();
  });

  it("wakes a piece read waiting for a node's slot only when a slot of that node is given back", async () => {
    const s = selector(1);
    const onA = s.tryTakePieceSlot('node-a', 'interactive')!;
    const onC = s.tryTakePieceSlot('node-c', 'interactive')!;
    let woken = false;
    const waiting = s.slotFreed('node-a').then(() => (woken = true));
    onC(); // another node's slot: the waiter for node-a has nothing to gain
    await new Promise((r) => setTimeout(r, 20));
    expect(woken).toBe(false);
    onA();
    await waiting;
    expect(woken).toBe(true);
  });

  it('counts the readers of other conductors from the lock folder, its own only once', async () => {
    const readers = (node: string, ...names: string[]) =>
      Promise.all(names.map((n) => fsp.mkdir(path.join(root, node, 'locks', 'img', n), { recursive: true })));
    await readers('node-a', 'r~other~1', 'r~other~2');
    await readers('node-c', 'r~me~1', 'r~another~3');
    const s = selector();
    // node-a: 2 foreign readers; node-c: 1 foreign + 0 slots here (r~me~1 is ours: counted by our slots, not twice).
    expect((await pick(s, { imageId: 'img', destination: 'node-b' })).node).toBe('node-c');
    // node-c now: 1 foreign + 1 slot = 2, node-a: 2 -> tie on load, fewer of our own reads wins.
    expect((await pick(s, { imageId: 'img', destination: 'node-b' })).node).toBe('node-a');
  });

  it('tells a missing image from a holder of other bytes, and says selection in the detail', async () => {
    const s = selector();
    const code = (job: Parameters<SourceSelector['acquire']>[0]) =>
      pick(s, job).then(
        (p) => (p.release(), 'picked'),
        (e: ReasonError) =>
          `${e.code}${e.code === 'SOURCE_MISSING' && !e.message.startsWith('source selection: ') ? ' (no prefix!)' : ''}`,
      );
    expect(await code({ imageId: 'other', destination: 'node-b' })).toBe('SOURCE_MISSING');
    expect(await code({ imageId: 'img', destination: 'node-b', source: 'node-b' })).toBe('SOURCE_MISSING');
    expect(
      await code({ imageId: 'img', destination: 'node-b', source: 'node-a', sha256: '0'.repeat(64) }),
    ).toBe('CHECKSUM_MISMATCH');
    expect(await code({ imageId: 'img', destination: 'node-b', sha256: '0'.repeat(64) })).toBe(
      'CHECKSUM_MISMATCH',
    );
    expect(await code({ imageId: 'img', destination: 'node-b', source: 'node-a', size: 1 })).toBe(
      'SIZE_MISMATCH',
    );
    expect(await code({ imageId: 'img', destination: 'node-b', sha256, size: 11 })).toBe('picked');
  });

  it('never chooses a node marked draining (a named source is still honoured)', async () => {
    await fsp.writeFile(path.join(root, 'node-a', 'draining'), '');
    const s = selector();
    for (let i = 0; i < 5; i++) {
      const picked = await pick(s, { imageId: 'img', destination: 'node-b' });
      expect(picked.node).toBe('node-c');
      picked.release();
    }
    await fsp.writeFile(path.join(root, 'node-c', 'draining'), '');
    await expect(pick(s, { imageId: 'img', destination: 'node-b' })).rejects.toThrow(
      /no node holds a verified copy of img \(nodes draining, not used as sources: node-/,
    );
    expect((await pick(s, { imageId: 'img', destination: 'node-b', source: 'node-a' })).node).toBe('node-a');
  });

  it('never chooses a node that is not registered (no marker, or a broken one), and says so when none is left', async () => {
    await store.markers.unregisterNode('node-a');
    const s = selector();
    for (let i = 0; i < 5; i++) {
      const picked = await pick(s, { imageId: 'img', destination: 'node-b' });
      expect(picked.node).toBe('node-c');
      picked.release();
    }
    await fsp.writeFile(store.nodeLayout('node-c').marker, '{"v":1}');
    await expect(pick(s, { imageId: 'img', destination: 'node-b' })).rejects.toThrow(
      /^source selection: no node holds a verified copy of img \(nodes not registered, not used as sources: node-[ac], node-[ac]\)$/,
    );
  });

  it('says why a named source holds no verified copy (the meta field at fault)', async () => {
    const metaPath = store.entries.metaPath('node-a', 'img');
    const { lastUsedAt: _dropped, ...meta } = JSON.parse(await fsp.readFile(metaPath, 'utf8')) as Record<
      string,
      unknown
    >;
    await fsp.writeFile(metaPath, JSON.stringify(meta));
    await expect(
      pick(selector(), { imageId: 'img', destination: 'node-b', source: 'node-a' }),
    ).rejects.toThrow(
      /^source selection: node node-a holds no verified copy of img \(meta file invalid: lastUsedAt: /,
    );
  });

  it('uses its index: no scan per request, learned holders at once, stale entries forgotten, misses rescanned', async () => {
    const s = selector();
    for (let i = 0; i < 20; i++) (await pick(s, { imageId: 'img', destination: 'node-b' })).release();
    expect(scans).toBe(1);
    // A copy this conductor published is a source at once, without a scan.
    await store.imports.importImage('node-d', 'img', seedFile);
    s.learnHolder('node-d', 'img');
    const three = [];
    for (let i = 0; i < 3; i++) three.push(await pick(s, { imageId: 'img', destination: 'node-b' }));
    expect(three.map((p) => p.node).sort()).toEqual(['node-a', 'node-c', 'node-d']);
    for (const p of three) p.release();
    expect(scans).toBe(1);
    // An evicted copy is verified away and forgotten.
    await fsp.rm(store.entries.metaPath('node-a', 'img'));
    await fsp.rm(store.entries.metaPath('node-c', 'img'));
    // (node-d busier here than the others, so both stale entries are tried first)
    const busy = [];
    for (let i = 0; i < 3; i++)
      busy.push(await pick(s, { imageId: 'img', destination: 'node-b', source: 'node-d' }));
    expect((await pick(s, { imageId: 'img', destination: 'node-b' })).node).toBe('node-d');
    expect([...(await index.holdersOf('img'))].sort()).toEqual(['node-d']);
    for (const p of busy) p.release();
    // An image seeded by someone else after the scan is found by the rescan a miss triggers.
    await store.imports.importImage('node-e', 'new-img', seedFile);
    expect((await pick(s, { imageId: 'new-img', destination: 'node-b' })).node).toBe('node-e');
    expect(scans).toBe(2);
  });

  it('a miss on a mount dead for a moment is retryable, and the holders it forgot are used once it is back', async () => {
    // The cell's folder as a mount shows it: dead = an empty folder at the same path (a lazy unmount).
    const clock = { ms: 0 };
    let dead = false;
    index = new ImageHolderIndex(store.entries, {
      ttlMs: 60_000,
      missRescanMs: 1_000,
      now: () => clock.ms,
      sleep: async (ms) => void (clock.ms += ms),
      rootCheck: async () => (dead ? 'the cell key is gone (a dead mount)' : undefined),
    });
    await index.refresh();
    clock.ms += SETTLE_MS;
    await index.refresh(); // the listings are final: later scans list a folder only if its signature changed
    const s = selector();
    const failure = (job: Parameters<SourceSelector['acquire']>[0]) =>
      pick(s, job).then(
        () => 'picked',
        (e: ReasonError) => e.code,
      );
    expect(await failure({ imageId: 'nowhere', destination: 'node-b' })).toBe('SOURCE_MISSING'); // a miss scan
    const away = `${root}.away`;
    await fsp.rename(root, away);
    await fsp.mkdir(root);
    dead = true;
    clock.ms += 10;
    // Both holders fail their look and are forgotten; nothing seen on a dead mount is an answer.
    expect(await failure({ imageId: 'img', destination: 'node-b' })).toBe('CACHE_UNAVAILABLE');
    await fsp.rmdir(root);
    await fsp.rename(away, root); // made again: the node folders' signatures are what they were
    dead = false;
    clock.ms += 10;
    expect(['node-a', 'node-c']).toContain((await pick(s, { imageId: 'img', destination: 'node-b' })).node);
  });

  it('waits for a read slot (NODE_READ_LIMIT), and ends the wait with a retryable LOCK_TIMEOUT', async () => {
    const s = selector(1);
    const job = { imageId: 'img', destination: 'node-b', source: 'node-a' };
    const held = await pick(s, job);
    const started = Date.now();
    const error = (await pick(s, job, 300).catch((e: unknown) => e)) as ReasonError;
    expect(error.code).toBe('LOCK_TIMEOUT');
    expect(error.retryable).toBe(true);
    expect(error.message).toMatch(/read slot on node node-a: NODE_READ_LIMIT=1/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    // The next pick waits until the slot is released, and reports (some of) that wait, never more than it
    // took in all. (No lower bound in ms: the look-ups around the wait are not counted, and take long on a
    // loaded machine.)
    let released = false;
    const waitingSince = performance.now();
    const waiting = pick(s, job, 5_000).then((picked) => ({ picked, releasedBefore: released }));
    // Released once the pick waits (marked as an interactive waiter), not after a fixed time: on a loaded
    // machine its look-ups alone can outlast any fixed delay, and it would find the slot free at once.
    const waiters = (s as unknown as { interactiveWaiting: Map<string, number> }).interactiveWaiting;
    const since = performance.now();
    while (!waiters.has('node-a') && performance.now() - since < 4_000)
      await new Promise((r) => setTimeout(r, 5));
    released = true;
    held.release();
    const { picked: next, releasedBefore } = await waiting;
    const tookMs = performance.now() - waitingSince;
    expect(releasedBefore).toBe(true);
    expect(next.node).toBe('node-a');
    expect(next.slotWaitMs).toBeGreaterThan(0);
    expect(next.slotWaitMs).toBeLessThanOrEqual(tookMs);
    // A free slot elsewhere is preferred to a full node.
    expect((await pick(s, { imageId: 'img', destination: 'node-b' })).node).toBe('node-c');
  });

  it('a copy waiting for a slot switches to a holder learned meanwhile (fan-out spreads)', async () => {
    // No polling within the wait: only the learn can wake the waiting copy before its timeout.
    const s = selector(1, 60_000);
    await fsp.rm(store.entries.metaPath('node-c', 'img'));
    await index.refresh();
    const first = await pick(s, { imageId: 'img', destination: 'node-b' });
    expect(first.node).toBe('node-a');
    const waiting: Promise<PickedSource> = pick(s, { imageId: 'img', destination: 'node-x' }, 5_000);
    await new Promise((r) => setTimeout(r, 50));
    await store.imports.importImage('node-b', 'img', seedFile); // the first destination completes
    s.learnHolder('node-b', 'img');
    const second = await waiting;
    expect(second.node).toBe('node-b');
    expect(s.reads('node-a')).toBe(1);
  });
});
