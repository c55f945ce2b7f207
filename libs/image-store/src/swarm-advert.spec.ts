import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { listDir } from '../../../test/support/image-store-fixtures';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import type { PieceList } from './piece-list';
import { StoreContext } from './store-context';
import { SwarmAdvert, readSwarmPeer, swarmFolder } from './swarm-files';
import { SWARM_KEEPALIVE_MS, type SwarmRecord, emptyHave, setPiece, swarmRecordName } from './swarm-record';

const IMAGE = 'ubuntu-24.04.qcow2';
const LIST: PieceList = {
  v: 1,
  imageId: IMAGE,
  sha256: 'a'.repeat(64),
  size: 10 * 4 * 1024 * 1024 + 5,
  pieceBytes: 4 * 1024 * 1024,
  pieces: Array.from({ length: 11 }, (_, i) => i.toString(16).padStart(64, '0')),
};
const START = new Date('2026-03-01T12:00:00.000Z');

/** One turn of the real event loop (setImmediate is not faked below): lets real file I/O complete. */
const realTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Waits, in real time, for `done`; fails after 5 s. */
async function until(what: string, done: () => boolean): Promise<void> {
  const end = performance.now() + 5_000;
  while (!done()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await realTurn();
  }
}

/** Waits `ms` of real time (for something that must not happen). */
async function realWait(ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) await realTurn();
}

// Time is fake (the 200 ms spacing, the keepalive, updatedAt); the files are real.
describe('the record of a copy in progress (SwarmAdvert)', () => {
  let root: string;
  let store: StoreContext;
  let errors: unknown[];
  /** What happened, in order: flush start and end, each rename of a record into place. */
  let log: string[];
  let renames: Array<Promise<unknown>>;
  let failNextRename: Error | undefined;
  let adverts: SwarmAdvert[];

  beforeEach(async () => {
    root = await makeTempDir('swarm-advert');
    await fsp.mkdir(path.join(root, 'node-1')); // a cell's CACHE_ROOT is never empty (makeCellFolder)
    // Reads each record afresh: these cases rewrite one and read it at once.
    store = new StoreContext({ root, fsync: false, swarmReadShareMs: 0 });
    errors = [];
    log = [];
    renames = [];
    failNextRename = undefined;
    adverts = [];
    vi.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
      now: START,
    });
    const realRename = fsp.rename;
    vi.spyOn(fsp, 'rename').mockImplementation((from, to) => {
      log.push(`rename ${path.basename(String(to))}`);
      const failure = failNextRename;
      failNextRename = undefined;
      const done = failure ? Promise.reject(failure) : realRename(from, to);
      renames.push(done.catch(() => undefined));
      return done;
    });
  });

  afterEach(async () => {
    for (const advert of adverts) await advert.close();
    vi.useRealTimers();
    vi.restoreAllMocks();
    await removeDir(root);
  });

  const folder = () => swarmFolder(store, IMAGE);
  const nameOf = (node: string) => swarmRecordName(node, 'attempt-1');
  const fileOf = (node: string) => path.join(folder(), nameOf(node));

  function advertOf(node: string, flush: () => Promise<void> = async () => void log.push('flush')) {
    const advert = new SwarmAdvert(
      store,
      {
        imageId: IMAGE,
        node,
        attemptId: 'attempt-1',
        sha256: LIST.sha256,
        size: LIST.size,
        pieceBytes: LIST.pieceBytes,
        pieceCount: LIST.pieces.length,
      },
      flush,
      (error) => errors.push(error),
    );
    adverts.push(advert);
    return advert;
  }

  /**
   * Advances fake time by `ms`, then waits until `count` writes in all have completed. A write starts
   * with its flush, called as soon as its timer fires: a write that was not expected is seen by its flush
   * even before its rename.
   */
  async function advance(ms: number, count: number): Promise<void> {
    await vi.advanceTimersByTimeAsync(ms);
    expect(log.filter((entry) => entry === 'flush')).toHaveLength(count);
    await until(`rename ${count}`, () => renames.length >= count);
    await Promise.all(renames);
    await realTurn(); // what write() does after its rename (microtasks only)
    expect(renames).toHaveLength(count);
  }

  async function recordOn(node: string): Promise<SwarmRecord> {
    return JSON.parse(await fsp.readFile(fileOf(node), 'utf8')) as SwarmRecord;
  }

  function haveOf(...pieces: number[]): Uint8Array {
    const have = emptyHave(LIST.pieces.length);
    for (const piece of pieces) setPiece(have, piece);
    return have;
  }

  it('writes nothing before its first piece or read, then a record others read the piece from', async () => {
    const advert = advertOf('node-c');
    await advance(SWARM_KEEPALIVE_MS * 2, 0);
    expect(await listDir(path.dirname(folder()))).toEqual([]);

    advert.pieceWritten(3);
    await advance(0, 1);
    expect(await readSwarmPeer(store, LIST, nameOf('node-c'))).toEqual({
      node: 'node-c',
      attemptId: 'attempt-1',
      partialPath: path.join(root, 'node-c', 'tmp', `${IMAGE}~attempt-1.part`),
      have: haveOf(3),
      reading: new Set(),
    });
    // Written when the piece came, not at the keepalives before it.
    expect(await recordOn('node-c')).toMatchObject({
      v: 1,
      updatedAt: new Date(START.getTime() + SWARM_KEEPALIVE_MS * 2).toISOString(),
    });
    expect(await listDir(folder())).toEqual([nameOf('node-c')]); // no temporary file left
    expect(errors).toEqual([]);
  });

  it('names the pieces it is reading, rewritten as for a new piece, and no longer once their reads end', async () => {
    const advert = advertOf('node-c');
    advert.readingChanged(4, true);
    advert.readingChanged(7, true);
    await advance(0, 1);
    expect(await readSwarmPeer(store, LIST, nameOf('node-c'))).toMatchObject({
      have: haveOf(),
      reading: new Set([4, 7]),
    });
    advert.readingChanged(4, false);
    advert.pieceWritten(4);
    advert.readingChanged(7, false); // its read failed
    await advance(200, 2);
    expect(await readSwarmPeer(store, LIST, nameOf('node-c'))).toMatchObject({
      have: haveOf(4),
      reading: new Set(),
    });
    expect(errors).toEqual([]);
  });

  it('rewrites at most every 200 ms: pieces that come within that go in one write', async () => {
    const advert = advertOf('node-c');
    advert.pieceWritten(0);
    await advance(0, 1);
    for (const piece of [1, 2, 3]) {
      advert.pieceWritten(piece);
      await advance(50, 1);
    }
    await advance(49, 1); // 199 ms after the first write
    expect((await readSwarmPeer(store, LIST, nameOf('node-c'))) as { have: Uint8Array }).toMatchObject({
      have: haveOf(0),
    });
    await advance(1, 2);
    expect(await readSwarmPeer(store, LIST, nameOf('node-c'))).toMatchObject({ have: haveOf(0, 1, 2, 3) });
    // Nothing new: no write until the keepalive.
    await advance(SWARM_KEEPALIVE_MS - 500, 2);
    expect(errors).toEqual([]);
  });

  it('flushes the partial before each write, and writes only once the flush is done', async () => {
    let release: () => void = () => undefined;
    const advert = advertOf('node-c', async () => {
      log.push('flush');
      await new Promise<void>((resolve) => (release = resolve));
      log.push('flushed');
    });
    advert.pieceWritten(0);
    await vi.advanceTimersByTimeAsync(0);
    await realWait(50); // time enough for a write that did not wait
    expect(log).toEqual(['flush']);
    release();
    await advance(0, 1);
    advert.pieceWritten(1);
    await vi.advanceTimersByTimeAsync(200);
    release();
    await advance(0, 2);
    expect(log).toEqual([
      'flush',
      'flushed',
      `rename ${nameOf('node-c')}`,
      'flush',
      'flushed',
      `rename ${nameOf('node-c')}`,
    ]);
  });

  it('rewrites updatedAt every SWARM_KEEPALIVE_MS with no new piece, so that it never looks stale', async () => {
    const advert = advertOf('node-c');
    advert.pieceWritten(5);
    await advance(0, 1);
    await advance(SWARM_KEEPALIVE_MS - 1, 1);
    // The keepalive's write is due at once (the fake clock runs a timer set during a tick 1 ms later).
    await advance(2, 2);
    const rewritten = Date.parse((await recordOn('node-c')).updatedAt) - START.getTime();
    expect(rewritten).toBeGreaterThanOrEqual(SWARM_KEEPALIVE_MS);
    expect(rewritten).toBeLessThanOrEqual(SWARM_KEEPALIVE_MS + 1);
    for (let i = 3; i <= 9; i++) await advance(SWARM_KEEPALIVE_MS, i);
    // 40 s after its last piece: older than SWARM_STALE_MS without the keepalive.
    expect(await readSwarmPeer(store, LIST, nameOf('node-c'))).toMatchObject({ have: haveOf(5) });
  });

  it('rewrites more often with a short stale time: six times within it', async () => {
    store = new StoreContext({ root, fsync: false, swarmStaleMs: 6_000 });
    const advert = advertOf('node-c');
    advert.pieceWritten(5);
    await advance(0, 1);
    await advance(999, 1);
    await advance(2, 2);
    await advance(1_000, 3);
  });

  it('close removes the record, and the image’s folder only when no other copy has a record there', async () => {
    const c = advertOf('node-c');
    const d = advertOf('node-d');
    c.pieceWritten(0);
    d.pieceWritten(1);
    await advance(0, 2);
    expect(await listDir(folder())).toEqual([nameOf('node-c'), nameOf('node-d')]);
    await c.close();
    expect(await listDir(folder())).toEqual([nameOf('node-d')]);
    await d.close();
    expect(await listDir(path.dirname(folder()))).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('reports a failed write through onError, leaves no temporary file, and writes again', async () => {
    const advert = advertOf('node-c');
    const failure = Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' });
    failNextRename = failure;
    advert.pieceWritten(0);
    await advance(0, 1);
    await until('onError', () => errors.length > 0);
    expect(errors).toEqual([failure]);
    expect(await listDir(folder())).toEqual([]);
    // Retried after the 200 ms spacing, with the pieces written meanwhile.
    advert.pieceWritten(1);
    await advance(200, 2);
    expect(await readSwarmPeer(store, LIST, nameOf('node-c'))).toMatchObject({ have: haveOf(0, 1) });
    expect(errors).toHaveLength(1);
  });

  it('retries a failed write at the keepalive when no piece comes, not five times a second', async () => {
    const advert = advertOf('node-c');
    failNextRename = Object.assign(new Error('EIO: i/o error, rename'), { code: 'EIO' });
    advert.pieceWritten(0);
    await advance(0, 1);
    await until('onError', () => errors.length > 0);
    await advance(1_000, 1); // no write of its own within a second
    expect(await listDir(folder())).toEqual([]);
    await advance(SWARM_KEEPALIVE_MS, 2);
    expect(await readSwarmPeer(store, LIST, nameOf('node-c'))).toMatchObject({ have: haveOf(0) });
    expect(errors).toHaveLength(1);
  });

  it('makes the image’s folder again when another copy’s close removed it', async () => {
    const advert = advertOf('node-c');
    advert.pieceWritten(0);
    await advance(0, 1);
    await fsp.rm(folder(), { recursive: true });
    advert.pieceWritten(1);
    await advance(200, 2);
    expect(await readSwarmPeer(store, LIST, nameOf('node-c'))).toMatchObject({ have: haveOf(0, 1) });
    expect(errors).toEqual([]);
  });

  it('writes nothing after close: a write due, a piece or a keepalive after it', async () => {
    const due = advertOf('node-c'); // closed with a write due
    const idle = advertOf('node-d'); // closed with none
    due.pieceWritten(0);
    idle.pieceWritten(0);
    await advance(0, 2);
    due.pieceWritten(1); // due in 200 ms
    await due.close();
    await idle.close();
    due.pieceWritten(2);
    idle.pieceWritten(2);
    await advance(SWARM_KEEPALIVE_MS * 3, 2);
    expect(log.filter((entry) => entry === 'flush')).toHaveLength(2);
    expect(await listDir(path.dirname(folder()))).toEqual([]);
  });

  it('close waits for a write under way, then removes what it wrote', async () => {
    let release: () => void = () => undefined;
    const advert = advertOf('node-c', () => new Promise<void>((resolve) => (release = resolve)));
    advert.pieceWritten(0);
    await vi.advanceTimersByTimeAsync(0);
    let closed = false;
    const closing = advert.close().then(() => (closed = true));
    await realWait(20);
    expect(closed).toBe(false);
    release();
    await closing;
    expect(renames).toHaveLength(1);
    expect(await listDir(path.dirname(folder()))).toEqual([]);
  });
});
