/** What the scheduler reads: the state of a fan-out, read-only (the Fanout class is the one writer). */

/** A piece of a node, as the scheduler knows it. */
export const PIECE_MISSING = 0;
export const PIECE_IN_FLIGHT = 1;
export const PIECE_VERIFIED = 2;

/** One read of one piece: `destination` reads `piece` from `source`, which holds it verified. */
export interface Fetch {
  readonly destination: number;
  readonly source: number;
  readonly piece: number;
}

export interface NodeView {
  readonly id: string;
  /** Holds every piece verified (a published image, or a destination that finished). */
  readonly complete: boolean;
  readonly destination: boolean;
  /** Killed, its lock lost, or a piece of it failed verification: serves nothing, fetches nothing. */
  readonly lost: boolean;
  readonly readSlots: number;
  readonly readBps: number;
  readonly writeBps: number;
  /** Per piece: PIECE_MISSING, PIECE_IN_FLIGHT (to this node) or PIECE_VERIFIED. */
  readonly pieces: Uint8Array;
  /** The verified pieces, in the order they arrived (the first `heldCount` entries). */
  readonly heldList: Uint16Array;
  readonly heldCount: number;
  /** The missing pieces not in flight (the first `missingCount` entries, in no particular order). */
  readonly missing: Uint16Array;
  readonly missingCount: number;
  /** Reads it serves now (each uses one of its read slots). */
  readonly serving: readonly Fetch[];
  /** Its own fetches in flight. */
  readonly fetching: readonly Fetch[];
  /** Turns it was offered so far: rotates its tie-breaks. */
  readonly turns: number;
}

/** A set of node indices with a stable order, for the holders with a free read slot. */
export interface IndexSetView {
  readonly size: number;
  at(i: number): number;
}

export interface FanoutView {
  readonly pieceCount: number;
  readonly maxFetchesPerDestination: number;
  readonly seed: number;
  readonly nodes: readonly NodeView[];
  /** Per piece: how many nodes not lost hold it verified. */
  readonly availability: Int32Array;
  /** Per piece: the nodes that hold it verified, lost or not (the first `holderCount[piece]` entries). */
  readonly holders: readonly Int32Array[];
  readonly holderCount: Int32Array;
  /** Partial holders (not lost, not complete, at least one piece) with a free read slot. */
  readonly freePartial: IndexSetView;
  /** Complete holders (not lost) with a free read slot. */
  readonly freeComplete: IndexSetView;
}
