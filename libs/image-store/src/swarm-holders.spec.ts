import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PIECE_BYTES, type PieceList } from './piece-list';
import { StoreContext } from './store-context';
import { boardKey } from './swarm-board';
import { SwarmAdvert } from './swarm-files';
import { MAX_PEERS_PER_COPY, MAX_REMOTE_PEERS_PER_COPY, flushPartial, openSwarm } from './swarm-holders';
import { emptyHave, setPiece } from './swarm-record';

const IMAGE = 'golden.qcow2';
const SHA = 'a'.repeat(64);
const PIECES = 8;

/*
 * Which copies in progress of this process a copy joins (openSwarm's discover): at most MAX_PEERS_PER_COPY
 * at random, and, in the end game, a few more that hold a piece none of its peers has.
 */
describe('joining copies in progress of this process', () => {
  let root: string;
  let store: StoreContext;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-swarm-holders-'));
    await fsp.mkdir(path.join(root, 'me')); // a cell's CACHE_ROOT is never empty (makeCellFolder)
    store = new StoreContext({ root, fsync: false });
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  /** A copy in progress on `node` in the board, with `pieces` verified. */
  const onBoard = (node: string, pieces: number[]) => {
    const have = emptyHave(PIECES);
    for (const piece of pieces) setPiece(have, piece);
    return store.swarmBoard.join(boardKey(IMAGE, SHA), {
      node,
      attemptId: `attempt-${node}`,
      partialPath: path.join(root, node, 'tmp', 'x.part'),
      have,
      reading: new Set<number>(),
    });
  };

  /** The copy under test: 'me', reading from 'origin' and the copies in progress it finds. */
  const openMine = async () => {
    const list: PieceList = {
      v: 1,
      imageId: IMAGE,
      sha256: SHA,
      size: PIECES * PIECE_BYTES,
      pieceBytes: PIECE_BYTES,
      pieces: Array.from({ length: PIECES }, () => 'b'.repeat(64)),
    };
    const to = await fsp.open(path.join(root, 'to.part'), 'w');
    const swarm = openSwarm(
      store,
      {},
      { imageId: IMAGE, destination: 'me', verified: ['origin'], attemptId: 'attempt-me', list },
      to,
    );
    return { swarm, to };
  };

  it('joins at most its cap of copies, and past it only copies that hold a piece none of its peers has', async () => {
    // Twice the cap of copies holding pieces 0-6; one more, the only one with piece 7.
    const crowd = Array.from({ length: 2 * MAX_PEERS_PER_COPY }, (_, i) => `n-${i}`);
    for (const node of crowd) onBoard(node, [0, 1, 2, 3, 4, 5, 6]);
    onBoard('rare', [7]);
    const { swarm, to } = await openMine();
    try {
      const first = await swarm.options.discover();
      expect(first).toHaveLength(MAX_PEERS_PER_COPY);
      // Nothing is wanted that the peers lack: the cap holds.
      expect(await swarm.options.discover(() => false)).toEqual([]);
      // Piece 7 is wanted, and only 'rare' has it (if 'rare' is already a peer, nothing more is needed).
      const joined = new Set(first.map((h) => h.node));
      const more = await swarm.options.discover((index) => index === 7);
      expect(more.map((h) => h.node)).toEqual(joined.has('rare') ? [] : ['rare']);
      // Pieces the crowd has, wanted: a few more of the crowd, up to a bound.
      const crowdMore = await swarm.options.discover((index) => index === 0);
      expect(crowdMore.length).toBeGreaterThan(0);
      expect(joined.size + more.length + crowdMore.length).toBeLessThanOrEqual(2 * MAX_PEERS_PER_COPY);
    } finally {
      await swarm.close();
      await to.close();
    }
  });

  /** A copy in progress of another conductor: its record only (SwarmAdvert writes it). */
  const farCopy = (node: string) =>
    new SwarmAdvert(
      store,
      {
        imageId: IMAGE,
        node,
        attemptId: `attempt-${node}`,
        sha256: SHA,
        size: PIECES * PIECE_BYTES,
        pieceBytes: PIECE_BYTES,
        pieceCount: PIECES,
      },
      async () => undefined,
      (error) => {
        throw error;
      },
    );

  it("joins more copies of this process than of other conductors: others' records are re-read at every look", async () => {
    expect(MAX_REMOTE_PEERS_PER_COPY).toBeLessThan(MAX_PEERS_PER_COPY);
    // Twice the cap of copies in progress in other conductors (their records only), none in this process.
    const adverts = Array.from({ length: 2 * MAX_PEERS_PER_COPY }, (_, i) => farCopy(`far-${i}`));
    for (const advert of adverts) advert.pieceWritten(0);
    const { swarm, to } = await openMine();
    try {
      await waitForRecords(2 * MAX_PEERS_PER_COPY);
      const joined: string[] = [];
      // A few records per look: look until a look finds no one new.
      for (let look = 0; look < 20; look++) {
        const found = await swarm.options.discover(() => true);
        if (found.length === 0) break;
        joined.push(...found.map((h) => h.node));
      }
      expect(joined).toHaveLength(MAX_REMOTE_PEERS_PER_COPY);
      expect(new Set(joined).size).toBe(joined.length);
    } finally {
      await swarm.close();
      await to.close();
      await Promise.all(adverts.map((a) => a.close()));
    }
  });

  it("counts the pieces another conductor's copy has or is reading, and tells its source they are being read elsewhere", async () => {
    // far-0 (another conductor: its record only, not joined) reads piece 2 and has piece 5; near, on this
    // conductor's board, reads piece 4.
    const far = farCopy('far-0');
    far.readingChanged(2, true);
    far.pieceWritten(5);
    onBoard('near', []).entry.reading.add(4);
    const { swarm, to } = await openMine();
    try {
      await waitForRecords(1);
      await swarm.options.discover(() => false); // a look: the view of the other conductors' records
      const { readingElsewhere, choice } = swarm.options;
      expect([2, 3, 4, 5].map((i) => readingElsewhere!(i))).toEqual([true, false, true, false]);
      expect([2, 3, 4, 5].map((i) => choice.rarity(i))).toEqual([1, 0, 1, 1]);
    } finally {
      await swarm.close();
      await to.close();
      await far.close();
    }
  });

  it('starts its choice at the first piece while alone, and at a piece drawn anew at each choice when not', async () => {
    const { swarm, to } = await openMine();
    try {
      expect(swarm.options.choice.offset).toBe(0);
      onBoard('other', [0]);
      const offsets = new Set(Array.from({ length: 64 }, () => swarm.options.choice.offset));
      // A place of the destination's own would give one offset: copies of other conductors whose records
      // lag then took the same next piece (choiceOffset). 64 draws of 8 give fewer than 4 about never.
      expect(offsets.size).toBeGreaterThanOrEqual(4);
      for (const offset of offsets) expect(offset).toBeGreaterThanOrEqual(0);
      for (const offset of offsets) expect(offset).toBeLessThan(PIECES);
    } finally {
      await swarm.close();
      await to.close();
    }
  });

  const waitForRecords = async (count: number) => {
    const folder = path.join(root, '.icc-swarms', IMAGE);
    for (let i = 0; i < 200; i++) {
      const names = await fsp.readdir(folder).catch(() => [] as string[]);
      if (names.filter((n) => n.endsWith('.json')).length >= count) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`fewer than ${count} records in ${folder}`);
  };
});

describe('flushPartial (before a record names new pieces)', () => {
  it('flushes an open partial; one its publish closed has nothing left to flush, and is no error', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-flush-'));
    try {
      const to = await fsp.open(path.join(dir, 'x.part'), 'w+');
      await to.write('piece');
      await flushPartial(to, true);
      await to.close();
      // Before: the last records of a published copy logged "could not write this copy's record of its
      // pieces: file closed", several times a copy.
      await expect(flushPartial(to, true)).resolves.toBeUndefined();
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
