import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import type { PieceList } from './piece-list';
import { StoreContext } from './store-context';
import { readSwarmPeer, readSwarmPeers, swarmFolder } from './swarm-files';
import { readSwarmView } from './swarm-view';
import {
  SWARMS_FOLDER,
  SWARM_POLL_MS,
  type SwarmRecord,
  emptyHave,
  encodeHave,
  setPiece,
  swarmRecordName,
} from './swarm-record';

const IMAGE = 'ubuntu-24.04.qcow2';
const LIST: PieceList = {
  v: 1,
  imageId: IMAGE,
  sha256: 'a'.repeat(64),
  size: 10 * 4 * 1024 * 1024 + 5,
  pieceBytes: 4 * 1024 * 1024,
  pieces: Array.from({ length: 11 }, (_, i) => i.toString(16).padStart(64, '0')),
};

describe('reading the records of copies in progress', () => {
  let root: string;
  let store: StoreContext;
  beforeEach(async () => {
    root = await makeTempDir('swarm-files');
    // Reads each record afresh: these cases rewrite one and read it at once (the last case shares).
    store = new StoreContext({ root, fsync: false, swarmReadShareMs: 0 });
  });
  afterEach(() => removeDir(root));

  const folder = () => swarmFolder(store, IMAGE);

  function recordOf(node: string, attemptId: string, overrides: Partial<SwarmRecord> = {}): SwarmRecord {
    const have = emptyHave(LIST.pieces.length);
    setPiece(have, 1);
    setPiece(have, 9);
    return {
      v: 1,
      imageId: IMAGE,
      node,
      attemptId,
      sha256: LIST.sha256,
      size: LIST.size,
      pieceBytes: LIST.pieceBytes,
      pieceCount: LIST.pieces.length,
      have: encodeHave(have),
      reading: [],
      updatedAt: new Date().toISOString(),
      ...overrides,
    };
  }

  async function put(name: string, content: SwarmRecord | string): Promise<void> {
    await fsp.mkdir(folder(), { recursive: true });
    await fsp.writeFile(
      path.join(folder(), name),
      typeof content === 'string' ? content : JSON.stringify(content),
    );
  }

  async function putRecord(node: string, attemptId: string, overrides: Partial<SwarmRecord> = {}) {
    await put(swarmRecordName(node, attemptId), recordOf(node, attemptId, overrides));
  }

  it('lives in CACHE_ROOT/.icc-swarms/<imageId>/', () => {
    expect(folder()).toBe(path.join(store.root, SWARMS_FOLDER, IMAGE));
  });

  it('gives the valid copies only: not invalid, another image’s, stale, skipped or temporary files', async () => {
    await putRecord('node-c', 'attempt-3');
    await put(swarmRecordName('node-d', 'attempt-4'), '{"v": 1, "imageId": ');
    await putRecord('node-e', 'attempt-5', { sha256: 'b'.repeat(64) });
    await putRecord('node-f', 'attempt-6', { updatedAt: new Date(Date.now() - 31_000).toISOString() });
    await putRecord('node-g', 'attempt-7', { imageId: 'debian-12.qcow2' });
    await putRecord('node-b', 'attempt-1'); // the destination's own
    // A rewrite's temporary file, whole and valid but not a record's name.
    await put('.record-0b9f7c1e-8d52-4c33-9a57-6c3e2f1d0a11.tmp', recordOf('node-h', 'attempt-8'));
    const problems: Array<[string, string]> = [];
    const skipped: string[] = [];
    const peers = await readSwarmPeers(
      store,
      LIST,
      (node) => {
        skipped.push(node);
        return node === 'node-b';
      },
      16,
      (name, problem) => problems.push([name, problem]),
    );

    const have = emptyHave(LIST.pieces.length);
    setPiece(have, 1);
    setPiece(have, 9);
    expect(peers).toEqual([
      {
        node: 'node-c',
        attemptId: 'attempt-3',
        partialPath: path.join(root, 'node-c', 'tmp', `${IMAGE}~attempt-3.part`),
        have,
        reading: new Set(),
      },
    ]);
    expect(problems.sort()).toEqual([
      ['node-d~attempt-4.json', expect.stringMatching(/^not JSON /)],
      ['node-e~attempt-5.json', expect.stringMatching(/^sha256, size: another image's \(b{64}, /)],
      ['node-f~attempt-6.json', expect.stringMatching(/^updatedAt: 3\d s old \(a dead copy's record\)$/)],
      ['node-g~attempt-7.json', 'imageId: debian-12.qcow2, not ubuntu-24.04.qcow2'],
    ]);
    // Every record's node is asked about before its file is read; the temporary file is no record.
    expect(skipped.sort()).toEqual(['node-b', 'node-c', 'node-d', 'node-e', 'node-f', 'node-g']);
  });

  it('keeps a record that is not yet SWARM_STALE_MS old (by default)', async () => {
    await putRecord('node-c', 'attempt-3', { updatedAt: new Date(Date.now() - 25_000).toISOString() });
    const peer = await readSwarmPeer(store, LIST, swarmRecordName('node-c', 'attempt-3'));
    expect(peer).toMatchObject({ node: 'node-c', attemptId: 'attempt-3' });
  });

  it('uses the store’s stale time when it has one (the conductor’s LOCK_STALE_MS)', async () => {
    const short = new StoreContext({ root, fsync: false, swarmStaleMs: 10_000 });
    await putRecord('node-c', 'attempt-3', { updatedAt: new Date(Date.now() - 12_000).toISOString() });
    await putRecord('node-d', 'attempt-4', { updatedAt: new Date(Date.now() - 8_000).toISOString() });
    const problems: string[] = [];
    const peers = await readSwarmPeers(
      short,
      LIST,
      () => false,
      16,
      (name) => problems.push(name),
    );
    expect(peers.map((p) => p.node)).toEqual(['node-d']);
    expect(problems).toEqual(['node-c~attempt-3.json']);
    expect(await readSwarmPeers(store, LIST, () => false, 16)).toHaveLength(2);
  });

  it('gives at most `max` copies, in random order', async () => {
    const nodes = ['node-c', 'node-d', 'node-e', 'node-f', 'node-g'];
    for (const node of nodes) await putRecord(node, 'attempt-1');
    const all = await readSwarmPeers(store, LIST, () => false, 16);
    expect(all.map((p) => p.node).sort()).toEqual(nodes);
    expect(await readSwarmPeers(store, LIST, () => false, 2)).toHaveLength(2);
    expect(await readSwarmPeers(store, LIST, () => false, 0)).toEqual([]);
    // Copies started together must not all pick the first names of the listing: over 40 looks of one
    // record each, more than one of the five comes first (all the same: 5 × (1/5)^40).
    const firsts = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const [peer] = await readSwarmPeers(store, LIST, () => false, 1);
      firsts.add(peer!.node);
    }
    expect(firsts.size).toBeGreaterThan(1);
  });

  it('counts only the copies it gives towards `max`: a skipped or broken record does not use a place', async () => {
    await put(swarmRecordName('node-c', 'attempt-3'), 'not json');
    await putRecord('node-b', 'attempt-1');
    await putRecord('node-d', 'attempt-4');
    // A record gone between the listing and its reading (here: a link to nothing) is skipped too.
    await fsp.symlink(path.join(root, 'gone'), path.join(folder(), swarmRecordName('node-e', 'attempt-5')));
    for (let i = 0; i < 20; i++) {
      const peers = await readSwarmPeers(store, LIST, (node) => node === 'node-b', 1);
      expect(peers.map((p) => p.node)).toEqual(['node-d']);
    }
  });

  it('gives none when no copy of the image has a record (no folder)', async () => {
    expect(await readSwarmPeers(store, LIST, () => false, 16)).toEqual([]);
    await fsp.mkdir(folder(), { recursive: true });
    expect(await readSwarmPeers(store, LIST, () => false, 16)).toEqual([]);
  });

  it('reads one record by name: undefined once it is gone, the problem when it is invalid', async () => {
    const name = swarmRecordName('node-c', 'attempt-3');
    expect(await readSwarmPeer(store, LIST, name)).toBeUndefined();
    await putRecord('node-c', 'attempt-3', { pieceCount: 12 });
    expect(await readSwarmPeer(store, LIST, name)).toMatch(/^pieceBytes, pieceCount: /);
    // A record under another copy's name is refused even though it is valid.
    await put(name, recordOf('node-d', 'attempt-3'));
    expect(await readSwarmPeer(store, LIST, name)).toBe(`node, attemptId: the file is named ${name}`);
    await fsp.rm(path.join(folder(), name));
    expect(await readSwarmPeer(store, LIST, name)).toBeUndefined();
  });

  it('shares a record and a folder listing among the copies of this process for one look (SWARM_POLL_MS)', async () => {
    const shared = new StoreContext({ root, fsync: false });
    const name = swarmRecordName('node-c', 'attempt-3');
    await putRecord('node-c', 'attempt-3');
    const first = await readSwarmPeer(shared, LIST, name);
    const listed = await readSwarmPeers(shared, LIST, () => false, 8);
    // Gone from the folder, and then back with other pieces: the copies here still see the first reads
    // until a look's time has passed (one read per look for all of them, not one per copy).
    const started = Date.now();
    await fsp.rm(path.join(folder(), name));
    await putRecord('node-d', 'attempt-4');
    const again = await readSwarmPeer(shared, LIST, name);
    const listedAgain = await readSwarmPeers(shared, LIST, () => false, 8);
    if (Date.now() - started < SWARM_POLL_MS) {
      expect(again).toEqual(first);
      expect(listedAgain).toEqual(listed);
    }
    await new Promise((resolve) => setTimeout(resolve, SWARM_POLL_MS));
    expect(await readSwarmPeer(shared, LIST, name)).toBeUndefined();
    expect((await readSwarmPeers(shared, LIST, () => false, 8)).map((p) => p.node)).toEqual(['node-d']);
  });

  it("counts per piece the other conductors' copies that have or are reading it, leaving out this one's (readSwarmView)", async () => {
    await putRecord('node-c', 'attempt-3', { reading: [2, 4] }); // has 1 and 9
    await putRecord('node-d', 'attempt-4', { reading: [1] });
    await putRecord('node-e', 'attempt-5', { reading: [3] }); // on this conductor's board: left out
    await putRecord('node-f', 'attempt-6', { pieceCount: 12, reading: [5] }); // another list's: left out
    const view = await readSwarmView(store, LIST, (node) => node === 'node-e');
    expect(view.copies).toBe(2);
    expect([...view.holders]).toEqual([0, 2, 1, 0, 1, 0, 0, 0, 0, 2, 0]);
    expect([...view.reading]).toEqual([0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
  });

  it('reads the view once per look for every copy of the image here, then afresh', async () => {
    const shared = new StoreContext({ root, fsync: false });
    await putRecord('node-c', 'attempt-3', { reading: [2] });
    const first = await readSwarmView(shared, LIST, () => false);
    const started = Date.now();
    await putRecord('node-c', 'attempt-3', { reading: [7] });
    const again = await readSwarmView(shared, LIST, () => false);
    if (Date.now() - started < SWARM_POLL_MS) expect(again).toBe(first);
    await new Promise((resolve) => setTimeout(resolve, SWARM_POLL_MS));
    const later = await readSwarmView(shared, LIST, () => false);
    expect([...later.reading].map((n, i) => (n > 0 ? i : -1)).filter((i) => i >= 0)).toEqual([7]);
  });
});
