import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exists, listDir, sha256OfFile } from '../../../test/support/image-store-fixtures';
import type { CopyImageRequest } from './copy-pipeline';
import { ImageStore } from './image-store';
import { PIECE_BYTES_MIN } from './piece-list';
import { IMAGE, useStoreFixture } from './store.fixture';
import { SWARMS_FOLDER, type SwarmRecord, emptyHave, encodeHave, setPiece } from './swarm-record';

/** Four pieces, the last one short. */
/** The pieces of an image this small: 1 MiB (pieceBytesFor gives that below 512 MiB). */
const PIECE = PIECE_BYTES_MIN;
const SIZE = 3 * PIECE + 321;
const PEER = 'node-c';
const PEER_ATTEMPT = 'peer-attempt';

/*
 * A copy that also reads from copies in progress (swarm-holders.ts, piece-copy.ts), through the pipeline
 * as the conductor calls it. The copy in progress on node-c is made by hand: its partial file in tmp/ and
 * its record in CACHE_ROOT/.icc-swarms/, announcing pieces 0 and 1.
 */
describe('copies that read from copies in progress', () => {
  const fx = useStoreFixture();
  let store: ImageStore;
  let sha256: string;
  let image: Buffer;
  let read: Record<string, number>;
  let dropped: Array<[string, string]>;
  let problems: string[];
  beforeEach(async () => {
    store = new ImageStore({ root: fx.root, onWarning: (message) => fx.warnings.push(message) });
    await store.markers.registerNode(PEER, 'swarm-copy.spec');
    sha256 = await fx.seed('node-a', SIZE);
    image = await fsp.readFile(store.entries.imagePath('node-a', IMAGE));
    read = { 'node-a': 0, [PEER]: 0 };
    dropped = [];
    problems = [];
  });
  afterEach(async () => {
    await store.close();
  });

  const recordDir = () => path.join(fx.root, SWARMS_FOLDER, IMAGE);
  const peerPartial = () => path.join(store.nodeLayout(PEER).tmp, `${IMAGE}~${PEER_ATTEMPT}.part`);

  /** node-c's copy in progress (or `node`'s): `bytes` in its partial, a record announcing `pieces`. */
  const peerCopy = async (
    pieces: number[],
    bytes: Buffer,
    record: Partial<SwarmRecord> = {},
    node = PEER,
  ) => {
    await fsp.mkdir(store.nodeLayout(node).tmp, { recursive: true });
    await fsp.writeFile(path.join(store.nodeLayout(node).tmp, `${IMAGE}~${PEER_ATTEMPT}.part`), bytes);
    const have = emptyHave(4);
    for (const index of pieces) setPiece(have, index);
    const full: SwarmRecord = {
      v: 1,
      imageId: IMAGE,
      node,
      attemptId: PEER_ATTEMPT,
      sha256,
      size: SIZE,
      pieceBytes: PIECE,
      pieceCount: 4,
      have: encodeHave(have),
      reading: [],
      updatedAt: new Date().toISOString(),
      ...record,
    };
    await fsp.mkdir(recordDir(), { recursive: true });
    await fsp.writeFile(path.join(recordDir(), `${node}~${PEER_ATTEMPT}.json`), JSON.stringify(full));
  };

  const pace = (node: string, onRead?: () => Promise<void> | void) => ({
    afterRead: async (bytes: number) => {
      read[node] = (read[node] ?? 0) + bytes;
      await onRead?.();
    },
    beforeWrite: async () => {},
  });

  const copy = (overrides: Partial<CopyImageRequest> = {}) =>
    store.copies.copyImage({
      imageId: IMAGE,
      source: 'node-a',
      destination: 'node-b',
      attemptId: 'attempt-1',
      pace: pace('node-a'),
      swarm: {
        paceOf: (node) => pace(node),
        onPeerProblem: (name, problem) => problems.push(`${name}: ${problem}`),
      },
      onHolderDropped: (node, why) => dropped.push([node, why]),
      ...overrides,
    });

  const published = () => sha256OfFile(store.entries.imagePath('node-b', IMAGE));

  it('reads the pieces a copy in progress announces from it, the others from the source, and leaves no record', async () => {
    await peerCopy([0, 1], image.subarray(0, 2 * PIECE));
    const piecesRead: string[] = [];
    const outcome = await copy({
      swarm: {
        paceOf: (node) => pace(node),
        onPieceRead: (node, inProgress) => piecesRead.push(`${node}${inProgress ? ' in progress' : ''}`),
      },
    });
    // Each piece told once, with where it came from.
    expect(piecesRead.sort()).toEqual(['node-a', 'node-a', `${PEER} in progress`, `${PEER} in progress`]);
    expect(outcome).toMatchObject({ status: 'copied', bytes: SIZE, sha256 });
    expect(await published()).toBe(sha256);
    // The source gave only what the copy in progress did not have: it seeds, the others pass pieces on.
    expect(read).toEqual({ 'node-a': PIECE + 321, [PEER]: 2 * PIECE });
    expect(dropped).toEqual([]);
    // Its own record is gone, the other copy's stays (that copy is not over).
    expect(await listDir(recordDir())).toEqual([`${PEER}~${PEER_ATTEMPT}.json`]);
  });

  it("drops a copy in progress whose announced piece is not the list's, and reads that piece from the source", async () => {
    const lying = Buffer.from(image.subarray(0, 2 * PIECE));
    lying[PIECE + 17] ^= 0xff; // piece 1 damaged: bytes the record says were verified
    await peerCopy([0, 1], lying);
    const outcome = await copy();
    expect(outcome).toMatchObject({ status: 'copied', sha256 });
    expect(await published()).toBe(sha256);
    expect(dropped).toEqual([
      [PEER, expect.stringMatching(/^piece 1 read from node node-c's copy in progress has sha256 /)],
    ]);
  });

  it('drops a copy in progress whose partial is shorter than it says, or gone, and completes from the source', async () => {
    await peerCopy([0, 1], image.subarray(0, PIECE + 5));
    expect(await copy()).toMatchObject({ status: 'copied', sha256 });
    expect(dropped.map(([node]) => node)).toEqual([PEER]);

    await store.markers.registerNode('node-d', 'swarm-copy.spec');
    dropped = [];
    await peerCopy([0, 1], image.subarray(0, 2 * PIECE));
    await fsp.rm(peerPartial());
    expect(await copy({ destination: 'node-d', attemptId: 'attempt-2' })).toMatchObject({
      status: 'copied',
      sha256,
    });
    expect(dropped.map(([node]) => node)).toEqual([PEER]);
  });

  it('reads from the source the pieces only a dropped copy in progress had, while another copy in progress is left', async () => {
    // node-c announces pieces 0 and 1, but its partial is gone: dropped at its first read.
    await peerCopy([0, 1], image.subarray(0, 2 * PIECE));
    await fsp.rm(peerPartial());
    // node-e, alive, has piece 0 only, and its record stays fresh: it will never have piece 1.
    await peerCopy([0], image.subarray(0, PIECE), {}, 'node-e');
    const stop = new AbortController();
    const copying = copy({ signal: stop.signal }).catch((error: unknown) => error);
    const outcome = await Promise.race([
      copying,
      new Promise((resolve) => setTimeout(() => resolve('still waiting for piece 1 after 5 s'), 5_000)),
    ]);
    stop.abort();
    await copying;
    expect(outcome).toMatchObject({ status: 'copied', sha256 });
    expect(dropped.map(([node]) => node)).toEqual([PEER]);
    // Piece 1 came from the source: the dropped copy's record no longer counts it as held elsewhere.
    expect(read['node-a']).toBe(2 * PIECE + 321);
  });

  it("never reads from a copy in progress on the source's node, so dropping one cannot drop the source", async () => {
    // A record on node-a (a dead attempt's, say) whose partial lies about piece 0: read, it would be
    // dropped, and with it every holder named node-a, the source too.
    const lying = Buffer.from(image.subarray(0, PIECE));
    lying[5] ^= 0xff;
    await peerCopy([0], lying, {}, 'node-a');
    expect(await copy()).toMatchObject({ status: 'copied', sha256 });
    expect(dropped).toEqual([]);
  });

  it('leaves out a record of other bytes, and says why', async () => {
    await peerCopy([0, 1], image.subarray(0, 2 * PIECE), { sha256: 'a'.repeat(64) });
    expect(await copy()).toMatchObject({ status: 'copied', sha256 });
    expect(read[PEER]).toBe(0);
    expect(problems).toEqual([
      expect.stringMatching(/^node-c~peer-attempt\.json: sha256, size: another image's/),
    ]);
  });

  it('ignores a stale record', async () => {
    await peerCopy([0, 1], image.subarray(0, 2 * PIECE), {
      updatedAt: new Date(Date.now() - 60_000).toISOString(),
    });
    expect(await copy()).toMatchObject({ status: 'copied', sha256 });
    expect(read[PEER]).toBe(0);
    expect(problems).toEqual([expect.stringMatching(/updatedAt: \d+ s old/)]);
  });

  it('announces its own verified pieces while it copies, and removes its record and folder at the end', async () => {
    let seen: string[] = [];
    let announced: SwarmRecord | undefined;
    const watch = async () => {
      // After the third piece's read: the first pieces' record has had time to be written.
      if (read['node-a']! < 3 * PIECE || announced) return;
      await new Promise((resolve) => setTimeout(resolve, 400));
      seen = await listDir(recordDir());
      const name = seen.find((n) => n.startsWith('node-b~'));
      if (name)
        announced = JSON.parse(await fsp.readFile(path.join(recordDir(), name), 'utf8')) as SwarmRecord;
    };
    expect(await copy({ pace: pace('node-a', watch) })).toMatchObject({ status: 'copied', sha256 });
    expect(seen).toEqual(['node-b~attempt-1.json']);
    expect(announced).toMatchObject({ node: 'node-b', attemptId: 'attempt-1', sha256, pieceCount: 4 });
    expect(Buffer.from(announced!.have, 'base64')[0]! & 0b11).not.toBe(0);
    expect(await exists(recordDir())).toBe(false);
  });

  it('two copies of one image in one process read from each other, and the source sends fewer bytes than two copies', async () => {
    await store.markers.registerNode('node-d', 'swarm-copy.spec');
    const slow = () => new Promise<void>((resolve) => setTimeout(resolve, 30));
    const both = await Promise.all(
      ['node-b', 'node-d'].map((destination) =>
        copy({
          destination,
          attemptId: `attempt-${destination}`,
          pace: pace('node-a', slow),
          swarm: { paceOf: (node) => pace(node, slow) },
        }),
      ),
    );
    for (const outcome of both) expect(outcome).toMatchObject({ status: 'copied', sha256 });
    expect(await sha256OfFile(store.entries.imagePath('node-d', IMAGE))).toBe(sha256);
    expect((read['node-b'] ?? 0) + (read['node-d'] ?? 0)).toBeGreaterThan(0);
    expect(read['node-a']).toBeLessThan(2 * SIZE);
    expect(await exists(recordDir())).toBe(false);
  });

  it('takes from its source a piece another copy here is stuck reading, once it has nothing else to read', async () => {
    await store.markers.registerNode('node-d', 'swarm-copy.spec');
    // node-d's copy gets stuck in its first read from the source, until it is aborted.
    const stuck = new AbortController();
    const stalled = copy({
      destination: 'node-d',
      attemptId: 'attempt-stuck',
      signal: stuck.signal,
      pace: {
        afterRead: () =>
          new Promise<void>((_, reject) =>
            stuck.signal.addEventListener('abort', () => reject(stuck.signal.reason), { once: true }),
          ),
        beforeWrite: async () => {},
      },
    }).catch((error: unknown) => error);
    await new Promise((resolve) => setTimeout(resolve, 100));
    try {
      const outcome = await copy();
      expect(outcome).toMatchObject({ status: 'copied', sha256 });
      expect(await published()).toBe(sha256);
    } finally {
      stuck.abort(new Error('test over'));
      await stalled;
    }
  });

  it('keeps its record until its meta is written, so that its readers find the published image in its place', async () => {
    const atPublish: Record<string, string[]> = {};
    const outcome = await copy({
      beforeIrreversibleStep: async (step) => {
        // The first record is written in the background when the first read starts: under load it was still
        // on its way at the publish step once (a full run). Waiting for it here still fails a copy that
        // removed its record before its meta: close() comes after the meta.
        // A rewrite under way shows its temporary file (`.record-<uuid>.tmp`) beside the record: left out.
        const records = async () => (await listDir(recordDir())).filter((name) => !name.startsWith('.'));
        for (let i = 0; i < 100 && (await records()).length === 0; i++) await sleep(10);
        atPublish[step] = await records();
      },
    });
    expect(outcome).toMatchObject({ status: 'copied', sha256 });
    expect(atPublish).toEqual({ publish: ['node-b~attempt-1.json'], meta: ['node-b~attempt-1.json'] });
    expect(await exists(recordDir())).toBe(false);
  });

  it('counts the reads in flight at their rates now: a read slowed by its holder leaves room for another', async () => {
    await peerCopy([0, 1], image.subarray(0, 2 * PIECE));
    // The write cap is 100. node-a's first read starts alone (a new read there expects 100), then node-a
    // takes on readers elsewhere and that read gets 25: the copy has room for node-c's read meanwhile.
    const nowRate: Record<string, number> = { 'node-a': 100, [PEER]: 100 };
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const order: string[] = [];
    let gated = false;
    const gatedPace = (node: string) =>
      pace(node, async () => {
        order.push(node);
        if (node !== 'node-a' || gated) return;
        gated = true;
        nowRate['node-a'] = 25;
        setTimeout(release, 400); // without the rule, node-c waits for this read to end
        await gate;
      });
    const outcome = await copy({
      pace: gatedPace('node-a'),
      swarm: {
        paceOf: (node) => gatedPace(node),
        expectedRate: (node, reading) => (reading ? nowRate[node]! : 100),
        writeBps: 100,
      },
    });
    expect(outcome).toMatchObject({ status: 'copied', bytes: SIZE, sha256 });
    // node-c read while node-a's first piece was held at the gate (node-a's second chunk comes after it).
    expect(order.indexOf(PEER)).toBeGreaterThan(-1);
    expect(order.indexOf(PEER)).toBeLessThan(order.lastIndexOf('node-a'));
    expect(order.slice(0, 2)).toEqual(['node-a', PEER]);
  });

  it("leaves to another conductor's copy the pieces its record names as being read, until it has nothing else", async () => {
    // node-c's copy (another process: known by its record only) is reading pieces 0-2 and has none yet.
    // The source gives piece 3 (321 bytes) first, then the rest once node-b is starved.
    await peerCopy([], Buffer.alloc(0), { reading: [0, 1, 2] });
    const sizes: number[] = [];
    const outcome = await copy({ pace: pace('node-a', () => void sizes.push(read['node-a']!)) });
    expect(outcome).toMatchObject({ status: 'copied', bytes: SIZE, sha256 });
    // The pieces being read elsewhere count as coming, and the source leaves them: piece 3 comes first.
    // The rest follow once node-b is starved (swarm-holders.spec checks the rule itself, without time).
    expect(sizes[0]).toBe(321);
    expect(read).toEqual({ 'node-a': SIZE, [PEER]: 0 });
  });

  it("counts a read in flight at the rate its holder's last piece got when that is below its computed share", async () => {
    await peerCopy([0, 1], image.subarray(0, 2 * PIECE));
    // node-a's share as this process counts it is the whole write cap (8 MiB/s), but readers elsewhere
    // (other conductors) keep its pieces at about 2 MiB/s. Its second read, counted at the first one's
    // rate, leaves room for node-c's; counted at its share, node-c waits until it ends.
    const writeBps = 8 * PIECE;
    const events: string[] = [];
    let aReads = 0;
    const slowPace = (node: string) =>
      pace(node, async () => {
        if (node !== 'node-a') return void events.push(PEER);
        const n = ++aReads;
        events.push(`node-a ${n}`);
        await sleep(500);
        events.push(`node-a ${n} done`);
      });
    const outcome = await copy({
      pace: slowPace('node-a'),
      swarm: {
        paceOf: (node) => slowPace(node),
        expectedRate: () => writeBps,
        writeBps,
      },
    });
    expect(outcome).toMatchObject({ status: 'copied', bytes: SIZE, sha256 });
    // node-a's first read is counted at its share (nothing measured yet): node-c reads only once it ended,
    // while node-a's piece is written. Its second read is counted at 2 MiB/s: node-c reads beside it.
    expect(events).toEqual(['node-a 1', 'node-a 1 done', PEER, 'node-a 2', PEER, 'node-a 2 done']);
  });

  it('fails retryably, not CHECKSUM_MISMATCH, when its own partial changes on disk after its pieces were verified', async () => {
    await peerCopy([0], image.subarray(0, PIECE));
    // node-c's piece 0 is held back until node-a's pieces 1-3 are written; meanwhile piece 2 is damaged in
    // node-b's own partial (a second writer, the disk). The source is fine: another attempt would succeed.
    const own = path.join(store.nodeLayout('node-b').tmp, `${IMAGE}~attempt-1.part`);
    let held = false;
    const holdPace = (node: string) =>
      pace(node, async () => {
        if (node !== PEER || held) return;
        held = true;
        await new Promise((resolve) => setTimeout(resolve, 300));
        const file = await fsp.open(own, 'r+');
        try {
          await file.write(Buffer.from([0xee]), 0, 1, 2 * PIECE + 9);
        } finally {
          await file.close();
        }
      });
    const failed = await copy({ swarm: { paceOf: (node) => holdPace(node) } }).catch(
      (error: unknown) => error,
    );
    expect(held).toBe(true);
    expect(failed).toMatchObject({
      code: 'IO_ERROR',
      message: expect.stringMatching(/changed on disk after its pieces were verified/),
    });
    expect(await exists(store.entries.imagePath('node-b', IMAGE))).toBe(false);
  });
});
