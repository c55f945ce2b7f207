import type { FileHandle } from 'node:fs/promises';
import { type StreamPace, openPublishedImage } from './image-copier';
import { type IoContext, isErrno } from './fs-errors';
import { readErrorOf } from './helper-holders';
import type { PieceHolder, SwarmOptions } from './piece-copy';
import type { PieceList } from './piece-list';
import type { StoreContext } from './store-context';
import { SwarmAdvert, type SwarmPeer, readSwarmPeer, readSwarmPeers, shuffled } from './swarm-files';
import { boardKey } from './swarm-board';
import { emptySwarmView, readSwarmView } from './swarm-view';
import { SWARM_POLL_MS, hasPiece, swarmRecordName } from './swarm-record';

/**
 * What a copy needs to read from other copies in progress of its image (docs/copies.md, "Reading from
 * copies in progress"): the caller's caps and read slots. Everything else comes from the cache.
 */
export interface SwarmRequest {
  /** The read cap of a holder's node and the destination's write cap. */
  paceOf?: (node: string) => StreamPace | undefined;
  /** A read slot on a node, per piece (NODE_READ_LIMIT): undefined when none is free now. */
  tryReadSlot?: (node: string) => (() => void) | undefined;
  /** Resolves when a read slot of `node` may have come free. */
  slotFreed?: (node: string) => Promise<void>;
  /** The rate a read from a node gets (new, or in flight), and the destination's write cap (piece-copy.ts). */
  expectedRate?: (node: string, reading?: boolean) => number;
  writeBps?: number;
  /** A copy in progress that was not read from, and why (an invalid record, say): for the log. */
  onPeerProblem?: (record: string, problem: string) => void;
  /** A record of this copy's that could not be written: for the log. */
  onAdvertError?: (error: unknown) => void;
  /** A piece read, verified and written: from `node`, a copy in progress (`inProgress`) or a verified holder. */
  onPieceRead?: (node: string, inProgress: boolean) => void;
}

/**
 * Copies in progress one copy reads from at most (besides its source). Each waits for a read slot of its
 * own node per piece, so more peers are more chances of a free one. 64 nodes in one process
 * (bench/RESULTS.md, rows 14a-14j): 32 brought the last copy to 1.45-1.48 of one copy's time, against
 * 1.57 with 16.
 */
export const MAX_PEERS_PER_COPY = 32;
/**
 * Of those, copies of other conductors at most: each is a record on the shared file system, re-read at every
 * look (SWARM_POLL_MS; one read per look for all of this process's copies, StoreContext.swarmReads). A
 * copy of this process costs no file-system call (its record is in memory).
 */
export const MAX_REMOTE_PEERS_PER_COPY = 16;
/** Copies in progress a copy may join beyond MAX_PEERS_PER_COPY, each for pieces none of its peers has. */
const END_GAME_PEERS = 8;
/** Records read per look for new copies in progress (a listing, then at most this many small reads). */
const DISCOVER_READS = 8;

/**
 * The swarm options of one copy into the partial `to`: its record (SwarmAdvert) and the copies in
 * progress it reads from. `close` removes its record; the caller calls it whatever the outcome.
 */
export function openSwarm(
  store: StoreContext,
  request: SwarmRequest,
  copy: {
    imageId: string;
    destination: string;
    /** The verified holders the copy reads from (its source, further holders): never read as a copy in progress. */
    verified: string[];
    attemptId: string;
    list: PieceList;
  },
  to: FileHandle,
): { options: SwarmOptions; close: () => Promise<void> } {
  const { list } = copy;
  const advert = new SwarmAdvert(
    store,
    {
      imageId: copy.imageId,
      node: copy.destination,
      attemptId: copy.attemptId,
      sha256: list.sha256,
      size: list.size,
      pieceBytes: list.pieceBytes,
      pieceCount: list.pieces.length,
    },
    () => flushPartial(to, store.fsync),
    (error) => request.onAdvertError?.(error),
  );
  const key = boardKey(copy.imageId, list.sha256);
  const board = store.swarmBoard;
  const destinationLayout = store.layout.node(copy.destination, 'destination');
  const { entry: self, leave } = board.join(key, {
    node: copy.destination,
    attemptId: copy.attemptId,
    partialPath: store.layout.tmpPath(destinationLayout, copy.imageId, copy.attemptId),
    have: advert.have,
    reading: advert.reading,
  });
  // Copies in other processes this copy reads from, as their records last showed them.
  const remote = new Map<string, PeerState>();
  // All copies in other processes, as their records showed them at the last look (swarm-view.ts): for the
  // rarest-first choice, and the pieces they are reading, which this copy's verified source leaves to
  // them (as to this process's copies, on the board).
  let view = emptySwarmView(list.pieces.length);
  const onBoard = (node: string) =>
    node === self.node || board.others(key, self).some((other) => other.node === node);
  const rarity = (index: number) => {
    let n = board.holdersOf(key, self, index) + view.holders[index]!;
    for (const peer of remote.values()) if (peer.complete) n++; // published: its record is gone
    return n;
  };
  const alone = () => remote.size === 0 && board.others(key, self).length === 0;
  const joined = new Set<string>();

  // New copies in progress only: this process's at once, then others' from their records.
  const discover = async (wanted?: (index: number) => boolean): Promise<PieceHolder[]> => {
    view = await readSwarmView(store, list, onBoard).catch(() => view);
    const found: PieceHolder[] = [];
    // The wanted pieces, listed once per look (only once past the cap), not once per copy looked at.
    let wantedPieces: number[] | undefined;
    const holdsWanted = (have: Uint8Array, wanted: (index: number) => boolean) => {
      wantedPieces ??= list.pieces.map((_, i) => i).filter(wanted);
      return wantedPieces.some((i) => hasPiece(have, i));
    };
    // In random order, as records are read: copies started together must not all pick the same peers.
    for (const other of shuffled(board.others(key, self))) {
      if (joined.has(other.node) || copy.verified.includes(other.node)) continue;
      // End game: past the cap, a copy that holds a piece none of the peers has.
      const room =
        joined.size < MAX_PEERS_PER_COPY ||
        (joined.size < MAX_PEERS_PER_COPY + END_GAME_PEERS && wanted && holdsWanted(other.have, wanted));
      if (!room) continue;
      joined.add(other.node);
      const peer: SwarmPeer = { ...other, have: other.have };
      const state: PeerState = { have: other.have, complete: false };
      found.push(peerHolder(store, request, list, peer, state, async () => (other.left ? undefined : peer)));
    }
    const room = Math.min(
      DISCOVER_READS,
      MAX_PEERS_PER_COPY - joined.size,
      MAX_REMOTE_PEERS_PER_COPY - remote.size,
    );
    if (room <= 0) return found;
    const local = new Set(board.others(key, self).map((e) => e.node));
    // Never a verified holder's node: holders are known by node, and dropping such a copy would drop the
    // verified holder (the source) with it.
    const skip = (node: string) =>
      node === copy.destination || copy.verified.includes(node) || joined.has(node) || local.has(node);
    for (const peer of await readSwarmPeers(store, list, skip, room, request.onPeerProblem)) {
      joined.add(peer.node);
      const state: PeerState = { have: peer.have, complete: false };
      remote.set(peer.node, state);
      const name = swarmRecordName(peer.node, peer.attemptId);
      found.push(peerHolder(store, request, list, peer, state, () => readSwarmPeer(store, list, name)));
    }
    return found;
  };

  return {
    options: {
      choice: {
        rarity,
        get offset() {
          return alone() ? 0 : choiceOffset(list.pieces.length);
        },
      },
      readingElsewhere: (index) => board.readingElsewhere(key, self, index) || view.reading[index]! > 0,
      discover,
      everyMs: SWARM_POLL_MS,
      ...(request.tryReadSlot ? { tryReadSlot: request.tryReadSlot } : {}),
      ...(request.slotFreed ? { slotFreed: request.slotFreed } : {}),
      ...(request.expectedRate ? { expectedRate: request.expectedRate } : {}),
      ...(request.writeBps ? { writeBps: request.writeBps } : {}),
      onPieceWritten: (index, from) => {
        advert.pieceWritten(index);
        if (from) request.onPieceRead?.(from.node, from.inProgress);
      },
      onReading: (index, reading) => advert.readingChanged(index, reading),
    },
    close: async () => {
      leave();
      await advert.close();
    },
  };
}

/**
 * The first piece a copy that is not alone looks at, drawn anew at each choice: copies started together
 * then ask for different pieces. Not a place of the destination's own: a copy's choice may rest on other
 * conductors' records up to about 0.7 s old (rewritten at most every 200 ms, read once per 250 ms look),
 * and copies that started from fixed places next to each other took the same next piece from the origin
 * before either's record showed it (16 nodes over four conductors: the origin sent 1.53–1.61 images;
 * bench/RESULTS.md, rows 16h–16i). A copy alone takes its pieces from the first on, so that its resume
 * checkpoint (a prefix) keeps up.
 */
export function choiceOffset(pieceCount: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.max(1, pieceCount));
}

interface PeerState {
  have: Uint8Array;
  complete: boolean;
}

/**
 * A copy in progress as a holder. Its record is re-read when it ran out of pieces to give; once the record
 * is gone, a verified image published in its place (the same sha256 and size) serves every piece, read
 * without a lock: the pieces are checked like any other, and a file removed meanwhile fails the read.
 */
function peerHolder(
  store: StoreContext,
  request: SwarmRequest,
  list: PieceList,
  peer: SwarmPeer,
  state: PeerState,
  readRecord: () => Promise<SwarmPeer | string | undefined>,
): PieceHolder {
  const layout = store.layout.node(peer.node, 'source');
  const context: IoContext = {
    side: 'source',
    what: `node ${peer.node}'s copy in progress of image ${list.imageId}`,
  };
  const publishedPath = store.layout.imagePath(layout, list.imageId);
  const refresh = async (): Promise<boolean> => {
    if (state.complete) return true;
    const read = await readRecord();
    if (typeof read === 'object') {
      state.have = read.have;
      return true;
    }
    if (read !== undefined) return false; // invalid or stale now
    const { meta } = await store.inspect(layout, list.imageId, context);
    state.complete = meta !== undefined && meta.sha256 === list.sha256 && meta.size === list.size;
    return state.complete;
  };
  const open = async (): Promise<[FileHandle, string]> => {
    if (state.complete) return [await openPublishedImage(publishedPath), publishedPath];
    try {
      return [await store.openOthersPartial(peer.partialPath), peer.partialPath];
    } catch (error) {
      // Published (renamed) between its record and this read: the same bytes, at the image's path.
      if (!isErrno(error, 'ENOENT')) throw error;
      return [await openPublishedImage(publishedPath), publishedPath];
    }
  };
  const pace = request.paceOf?.(peer.node);
  return {
    node: peer.node,
    ...(pace ? { pace } : {}),
    readError: readErrorOf(context),
    partial: {
      has: (index) => state.complete || hasPiece(state.have, index),
      refresh,
      withFile: (use) =>
        store.partialReads.track(peer.partialPath, async () => {
          const [file, where] = await open();
          try {
            return await use(file);
          } finally {
            await store.closeQuietly(file, where);
          }
        }),
    },
  };
}

/**
 * Makes a partial's written pieces durable before its record names them (with fsync on). A partial its
 * publish has closed was fsynced before: a record written after that (the last ones, until the meta is
 * there) has nothing to flush, rather than an error ("file closed") to log.
 */
export async function flushPartial(to: FileHandle, fsync: boolean): Promise<void> {
  if (!fsync || to.fd === -1) return;
  await to.datasync().catch((error: unknown) => {
    if (to.fd !== -1) throw error; // closed meanwhile: as above
  });
}
