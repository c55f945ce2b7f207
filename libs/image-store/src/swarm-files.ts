import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { errorText } from '@app/contracts';
import { makeCellFolder, uniqueTag, listNames, writeFileAtomic } from './durable-fs';
import { isErrno } from './fs-errors';
import { imageIdSchema } from '@app/contracts';
import type { PieceList } from './piece-list';
import { readJsonFile } from './shared-json-file';
import type { StoreContext } from './store-context';
import {
  SWARMS_FOLDER,
  SWARM_KEEPALIVE_MS,
  SWARM_READING_MAX,
  SWARM_RECORD_MAX_BYTES,
  type SwarmRecord,
  checkSwarmRecord,
  emptyHave,
  encodeHave,
  parseSwarmRecordName,
  setPiece,
  swarmRecordName,
  swarmRecordSchema,
} from './swarm-record';

/** The records of an image's copies in progress: `CACHE_ROOT/.icc-swarms/<imageId>/`. */
export function swarmFolder(store: StoreContext, imageId: string): string {
  return path.join(store.root, SWARMS_FOLDER, store.layout.imageId(imageId));
}

/** How often a live copy rewrites its record when nothing changed: well inside the stale time. */
function keepaliveMs(staleMs: number): number {
  return Math.min(SWARM_KEEPALIVE_MS, Math.floor(staleMs / 6));
}

/**
 * Record rewrites of one copy are at least this far apart: at most 5 file writes a second per copy on the
 * shared file system whatever its piece rate (a 1 MiB piece at 100 MiB/s takes 10 ms); copies in this
 * process see each piece at once through the board.
 */
const ADVERT_MIN_INTERVAL_MS = 200;

/**
 * The record of one copy in progress (swarm-record.ts): the pieces it has verified and written, rewritten
 * (atomically, by rename) at most every ADVERT_MIN_INTERVAL_MS and at least every SWARM_KEEPALIVE_MS (less
 * with a shorter stale time), and
 * removed when the copy ends, whatever the outcome. Before each rewrite the partial's new bytes are flushed
 * (`flush`), so that a reader on another client that opens the partial after reading the record sees them
 * (NFS's close-to-open rule). Advisory: a failed write is logged and retried at the next piece or keepalive, never a
 * reason to fail the copy.
 */
export class SwarmAdvert {
  /** The verified pieces announced (the copy's own bitmap: this process's board reads it too). */
  readonly have: Uint8Array;
  /** The pieces being read now (this process's board reads the same set). */
  readonly reading = new Set<number>();
  private readonly file: string;
  private readonly folder: string;
  private dirty = false;
  private closed = false;
  private lastWrite = 0;
  private writing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private readonly keepalive: NodeJS.Timeout;

  constructor(
    private readonly store: StoreContext,
    private readonly record: Omit<SwarmRecord, 'v' | 'have' | 'reading' | 'updatedAt' | 'pieceCount'> & {
      pieceCount: number;
    },
    private readonly flush: () => Promise<void>,
    private readonly onError: (error: unknown) => void,
  ) {
    this.have = emptyHave(record.pieceCount);
    this.folder = swarmFolder(store, record.imageId);
    this.file = path.join(this.folder, swarmRecordName(record.node, record.attemptId));
    this.keepalive = setInterval(() => this.schedule(true), keepaliveMs(store.swarmStaleMs));
    this.keepalive.unref();
  }

  /** Piece `index` is verified and written in the partial. */
  pieceWritten(index: number): void {
    setPiece(this.have, index);
    this.schedule(false);
  }

  /** Piece `index` is being read now (true), or no longer (false: written, or its read failed). */
  readingChanged(index: number, reading: boolean): void {
    if (reading) this.reading.add(index);
    else this.reading.delete(index);
    this.schedule(false);
  }

  /** Stops rewriting and removes the record (and the image's folder when it is left empty). Never throws. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.keepalive);
    if (this.timer) clearTimeout(this.timer);
    await this.writing;
    await fsp.rm(this.file, { force: true }).catch((error: unknown) => this.onError(error));
    await fsp.rmdir(this.folder).catch(() => undefined); // not empty, or gone: another copy's, or nothing
  }

  private schedule(keepalive: boolean): void {
    if (this.closed) return;
    if (!keepalive) this.dirty = true;
    else if (this.lastWrite === 0) return; // nothing advertised yet: nothing to keep alive
    if (this.timer) return;
    const wait = Math.max(0, this.lastWrite + ADVERT_MIN_INTERVAL_MS - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.writing = this.writing.then(() => this.write());
    }, wait);
    this.timer.unref();
  }

  private async write(): Promise<void> {
    if (this.closed) return;
    this.dirty = false;
    this.lastWrite = Date.now();
    const record: SwarmRecord = {
      v: 1,
      ...this.record,
      have: encodeHave(this.have),
      reading: [...this.reading].slice(0, SWARM_READING_MAX),
      updatedAt: new Date().toISOString(),
    };
    const write = () =>
      writeFileAtomic({
        tmpPath: path.join(this.folder, `.${uniqueTag('record')}.tmp`),
        finalPath: this.file,
        finalDir: this.folder,
        data: JSON.stringify(record),
        fsync: false,
        discard: (tmp) => fsp.rm(tmp, { force: true }).catch(() => undefined),
      });
    try {
      await this.flush();
      await write().catch(async (error: unknown) => {
        if (!isErrno(error, 'ENOENT')) throw error;
        // The folder is made on first use, and removed by a copy that ended when it was left empty.
        await makeCellFolder(this.store.root, this.folder);
        await write();
      });
    } catch (error) {
      // Tried again at the next piece or keepalive, not at once: a cache that refuses writes (full,
      // read-only) must not make every copy log five times a second.
      this.dirty = true;
      this.onError(error);
      return;
    }
    if (this.dirty) this.schedule(false);
  }
}

/** Records read at once by readSwarmPeers. */
const PARALLEL_READS = 16;

/** A copy in progress another copy may read pieces from: where its partial is and what it has verified. */
export interface SwarmPeer {
  node: string;
  attemptId: string;
  partialPath: string;
  have: Uint8Array;
  /** The pieces it was reading when its record was written. */
  reading: ReadonlySet<number>;
}

/**
 * Up to `max` copies in progress of `list`'s image, in random order, on nodes `skip` does not name (the
 * destination itself, those known already), each checked against the list (swarm-record.ts). A record
 * that is invalid, another image's or older than the store's swarmStaleMs is left out (`onProblem` says why); a
 * folder that cannot be read gives none.
 */
export async function readSwarmPeers(
  store: StoreContext,
  list: PieceList,
  skip: (node: string) => boolean,
  max: number,
  onProblem: (name: string, problem: string) => void = () => undefined,
): Promise<SwarmPeer[]> {
  const folder = swarmFolder(store, list.imageId);
  const names = await store.swarmReads
    .read(`${folder}${path.sep}`, () => listNames(folder))
    .catch(() => [] as string[]);
  const peers: SwarmPeer[] = [];
  // In random order: copies started together must not all read from the first names of the listing.
  const candidates = shuffled(names).filter((name) => {
    const named = parseSwarmRecordName(name);
    return named !== undefined && !skip(named.node);
  });
  // Read a few at once (as many as are still wanted, at most PARALLEL_READS): on a network file system
  // each read is a round trip, and a view of 256 records read one by one would take longer than a look.
  while (peers.length < max && candidates.length > 0) {
    const batch = candidates.splice(0, Math.min(PARALLEL_READS, max - peers.length));
    const read = await Promise.all(
      batch.map((name) => readSwarmPeer(store, list, name).catch((error: unknown) => errorText(error))),
    );
    read.forEach((peer, i) => {
      if (typeof peer === 'string') onProblem(batch[i]!, peer);
      else if (peer) peers.push(peer);
    });
  }
  return peers;
}

/** One record by name: the peer, undefined when it is gone, or why it cannot be read from. */
export async function readSwarmPeer(
  store: StoreContext,
  list: PieceList,
  name: string,
): Promise<SwarmPeer | string | undefined> {
  const file = path.join(swarmFolder(store, list.imageId), name);
  const read = await store.swarmReads.read(file, () =>
    readJsonFile(file, swarmRecordSchema, SWARM_RECORD_MAX_BYTES),
  );
  if (read.missing) return undefined;
  if (read.invalid !== undefined) return read.invalid;
  const record = read.value;
  const checked = checkSwarmRecord(record, name, list);
  if (checked.problem !== undefined) return checked.problem;
  const age = Date.now() - Date.parse(record.updatedAt);
  if (age > store.swarmStaleMs) return `updatedAt: ${Math.round(age / 1000)} s old (a dead copy's record)`;
  const layout = store.layout.node(record.node, 'source');
  return {
    node: record.node,
    attemptId: record.attemptId,
    partialPath: store.layout.tmpPath(layout, list.imageId, record.attemptId),
    have: checked.have,
    reading: checked.reading,
  };
}

/** A copy of `items` in random order. */
export function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/**
 * Removes the records (and temporary files) in `.icc-swarms/` that were not rewritten for `olderThanMs`
 * (a killed copy's: a live one rewrites its record every SWARM_KEEPALIVE_MS), and the image folders left
 * empty. A record removed by a collector whose clock runs ahead is written again at its copy's next
 * rewrite; readers ignore such records anyway. One listing when no copy is in progress. Never throws for
 * one file; returns how many files it removed.
 */
export async function collectStaleSwarmRecords(
  store: StoreContext,
  olderThanMs: number,
  now = Date.now(),
): Promise<number> {
  const top = path.join(store.root, SWARMS_FOLDER);
  let removed = 0;
  for (const image of await listNames(top)) {
    if (!imageIdSchema.safeParse(image).success) continue;
    const folder = path.join(top, image);
    for (const name of await listNames(folder).catch(() => [] as string[])) {
      const file = path.join(folder, name);
      const stat = await fsp.lstat(file).catch(() => undefined);
      if (!stat?.isFile() || stat.mtimeMs > now - olderThanMs) continue;
      await fsp.rm(file, { force: true }).then(
        () => removed++,
        () => undefined,
      );
    }
    await fsp.rmdir(folder).catch(() => undefined); // not empty: a copy in progress
  }
  return removed;
}
