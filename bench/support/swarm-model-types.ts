/*
 * What bench/support/swarm-model.ts is given (SwarmModel: the fan-out and the rules to run) and what one
 * simulated fan-out returns (SwarmRun).
 */

export interface SwarmModel {
  destinations: number;
  pieceCount: number;
  pieceBytes: number;
  imageBytes: number;
  /** Every node's read and write cap, bytes/s. */
  bps: number;
  readSlots: number;
  /** Count a read in flight at its current share instead of the rate expected when it started. */
  recount: boolean;
  /**
   * Rates by max-min fairness over every read (a node's cap not used by reads held back at their other
   * end goes to its other reads, as the real token buckets do) instead of each end's equal share. Every
   * rate is recomputed at every event: for tens of nodes, not thousands.
   */
  maxMin: boolean;
  /**
   * The end game of swarm-holders.ts's look (bench/support/swarm-end-game.ts): a copy with its 16 peers
   * joins up to 8 more copies in progress, each holding a piece it misses and none of its peers holds.
   */
  endGame: boolean;
  /**
   * What a verified holder leaves to the copies in progress (pieceTurn's `seedOnly`): `peers`, as built, the
   * pieces a peer of this copy holds or any copy is reading; `board`, also every piece any copy in
   * progress holds (its rarity above 0), for the copy to get through the end game. The starvation
   * fallback is pieceTurn's either way.
   */
  seedRule: 'peers' | 'board';
  seed: number;
}

export interface SwarmRun {
  /** Seconds at which each destination had every piece. */
  finishSeconds: number[];
  /**
   * Per destination, the share of the image its whole-image hash had still to read when its last piece
   * arrived (that hash follows the verified prefix; not modelled as time).
   */
  unhashed: number[];
  /**
   * The counted sum of the reads in flight over their actual rates, averaged over the admission checks that
   * found a copy at its write cap (above 1: the copy believes its cap is full when it is not).
   */
  countedOverActual: number;
  /** The write cap share a copy's reads actually used when the admission rule found it full (mean). */
  usedAtFull: number;
  /**
   * At its looks, how often a copy's reads used at least 95% of its write cap (`full`), used less while
   * the admission rule held it back (`heldBack`), or used less with room to read more: a holder waiting
   * for a read slot (`noSlot`), or none with a piece for it (`nothing`).
   */
  lookStates: { full: number; heldBack: number; noSlot: number; nothing: number };
  /**
   * The end game's joins: how many, and for each the share of the image the joining copy had then and the
   * time, in seconds.
   */
  endGameJoins: Array<{ had: number; at: number }>;
  /** Bytes the origin served. */
  originBytes: number;
  events: number;
  wallMs: number;
}
