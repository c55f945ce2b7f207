/*
 * The scheduler's one decision, pure: which piece an idle destination fetches next, and from which holder.
 * It reads a FanoutView and returns plain values; nothing here changes state.
 *
 * - Only a holder that is not lost, holds the piece verified and has a free read slot is ever named.
 * - Pieces: rarest first (fewest holders not lost) among PIECE_PROBES pieces the destination lacks, taken
 *   from a seeded start that rotates at every turn, so that destinations spread over different pieces.
 * - Holders: partial holders first (they spare the complete source for the pieces only it has); among them
 *   the first whose expected share of its read cap (readBps / (reads + 1)) fills the destination's unused
 *   write cap, else the largest share looked at (as today's "fewest reads").
 * - Rate: a destination opens another fetch only while the expected rates of its fetches in flight add up
 *   to less than its write cap, so it reads from several holders at once when they are slower than it.
 * - Bounded work: the probes look at PIECE_PROBES pieces and HOLDER_PROBES holders of each (a fan-out to
 *   10,000 nodes makes millions of decisions). A destination with fetches in flight stops there: its next
 *   turn comes at the latest when one of them ends.
 * - Complete when it matters: a destination with nothing in flight, if the probes find nothing, searches
 *   SEARCH_SCAN holders with a free slot (all of them when there are no more) and every piece of each, from
 *   its rotating start. So with up to SEARCH_SCAN free holders it is left waiting only when none holds a
 *   piece it lacks (and does not fetch already); with more, each turn looks at another part of them, so a
 *   free holder that stays useful is found within a few turns. Every destination keeps getting turns
 *   (Fanout.assign's round robin), so each finishes while the pieces it lacks are held by nodes not lost
 *   (specs: choose-fetch.spec.ts; fanout-drive.spec.ts drives fan-outs with faults to their end).
 */
import { PIECE_MISSING, PIECE_VERIFIED, type FanoutView, type Fetch, type NodeView } from './fanout-view';

/** Pieces the probes look at per decision. */
export const PIECE_PROBES = 8;
/** Holders the probes look at per piece. */
export const HOLDER_PROBES = 8;
/** Useful pieces the search looks at per holder to find the rarest. */
export const RAREST_SAMPLE = 8;
/** Useful holders the search compares before it takes the best share. */
export const SEARCH_SAMPLE = 8;
/** Holders with a free slot the search looks at, per kind (partial, complete). */
export const SEARCH_SCAN = 64;

/** A 32-bit mix of three integers (deterministic tie-breaks). */
export function mix(a: number, b: number, c: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ b, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ c, 0x27d4eb2f);
  return (h ^ (h >>> 15)) >>> 0;
}

/** Whether `node` wants another fetch at all (before bandwidth): a live, unfinished destination below its bound. */
export function mayFetch(state: FanoutView, node: NodeView): boolean {
  return (
    node.destination &&
    !node.complete &&
    !node.lost &&
    node.missingCount > 0 &&
    node.fetching.length < state.maxFetchesPerDestination
  );
}

/** Bytes per second one more read from `source` is expected to get, shared with its other reads. */
function share(state: FanoutView, source: number): number {
  const node = state.nodes[source]!;
  return node.readBps / (node.serving.length + 1);
}

/** The expected rate of a destination's fetches in flight, each capped by its own write cap. */
export function expectedInflow(state: FanoutView, destination: NodeView): number {
  let sum = 0;
  for (const f of destination.fetching) {
    const src = state.nodes[f.source]!;
    sum += Math.min(src.readBps / src.serving.length, destination.writeBps);
  }
  return sum;
}

/** Whether `h` may serve a read to `d` now: another node, not lost, with a free read slot. */
function canServe(state: FanoutView, h: number, d: number): boolean {
  const node = state.nodes[h]!;
  return h !== d && !node.lost && node.serving.length < node.readSlots;
}

interface Choice {
  source: number;
  piece: number;
  share: number;
}

/** The better of two choices: partial holders first, then the larger share. */
function better(state: FanoutView, a: Choice | undefined, b: Choice): Choice {
  if (a === undefined) return b;
  const aPartial = !state.nodes[a.source]!.complete;
  const bPartial = !state.nodes[b.source]!.complete;
  if (aPartial !== bPartial) return aPartial ? a : b;
  return b.share > a.share ? b : a;
}

const PROBED = new Int32Array(PIECE_PROBES);

/** The probes: rarest of PIECE_PROBES missing pieces first, HOLDER_PROBES of each one's holders. */
function probe(state: FanoutView, d: number, start: number, need: number): Choice | undefined {
  const dst = state.nodes[d]!;
  const n = Math.min(dst.missingCount, PIECE_PROBES);
  // Insertion sort by availability (then index) into a scratch array: no allocation per decision.
  const pieces = PROBED;
  for (let k = 0; k < n; k++) {
    const piece = dst.missing[(start + k) % dst.missingCount]!;
    const count = state.availability[piece]!;
    let i = k;
    for (; i > 0; i--) {
      const prev = pieces[i - 1]!;
      const prevCount = state.availability[prev]!;
      if (prevCount < count || (prevCount === count && prev < piece)) break;
      pieces[i] = prev;
    }
    pieces[i] = piece;
  }
  let best: Choice | undefined;
  for (let i = 0; i < n; i++) {
    const piece = pieces[i]!;
    const holders = state.holders[piece]!;
    const count = state.holderCount[piece]!;
    const from = mix(start, piece, 1) % Math.max(count, 1);
    for (let k = 0; k < Math.min(count, HOLDER_PROBES); k++) {
      const source = holders[(from + k) % count]!;
      if (!canServe(state, source, d)) continue;
      best = better(state, best, { source, piece, share: share(state, source) });
      if (!state.nodes[best.source]!.complete && best.share >= need) return best;
    }
    if (best && !state.nodes[best.source]!.complete) return best;
  }
  return best;
}

/** The rarest of up to RAREST_SAMPLE pieces `holder` has verified and `dst` is missing (not in flight); -1: none. */
export function rarestUseful(state: FanoutView, holder: NodeView, dst: NodeView, start: number): number {
  let best = -1;
  let bestCount = Infinity;
  let found = 0;
  // Walk the shorter list: the holder's verified pieces or the destination's missing ones.
  const byHeld = !holder.complete && holder.heldCount < dst.missingCount;
  const n = byHeld ? holder.heldCount : dst.missingCount;
  for (let k = 0; k < n && found < RAREST_SAMPLE; k++) {
    const piece = byHeld ? holder.heldList[(start + k) % n]! : dst.missing[(start + k) % n]!;
    const useful = byHeld ? dst.pieces[piece] === PIECE_MISSING : holder.pieces[piece] === PIECE_VERIFIED;
    if (!useful) continue;
    found++;
    if (state.availability[piece]! < bestCount) {
      best = piece;
      bestCount = state.availability[piece]!;
    }
  }
  return best;
}

/**
 * The search: up to SEARCH_SCAN holders with a free slot of each kind, partial ones first, every piece of
 * each; it stops early only once it has something (a holder filling the need, or SEARCH_SAMPLE compared).
 */
function search(state: FanoutView, d: number, start: number, need: number): Choice | undefined {
  const dst = state.nodes[d]!;
  for (const set of [state.freePartial, state.freeComplete]) {
    let best: Choice | undefined;
    let useful = 0;
    for (
      let k = 0;
      k < Math.min(set.size, SEARCH_SCAN) &&
      useful < SEARCH_SAMPLE &&
      (best === undefined || best.share < need);
      k++
    ) {
      const source = set.at((start + k) % set.size);
      if (!canServe(state, source, d)) continue;
      const piece = rarestUseful(state, state.nodes[source]!, dst, start);
      if (piece < 0) continue;
      useful++;
      best = better(state, best, { source, piece, share: share(state, source) });
    }
    if (best) return best;
  }
  return undefined;
}

/** The next fetch of destination `d`, or undefined when it may not or cannot start one now. */
export function chooseFetch(state: FanoutView, d: number): Fetch | undefined {
  const dst = state.nodes[d];
  if (dst === undefined || !mayFetch(state, dst)) return undefined;
  const need = dst.writeBps - expectedInflow(state, dst);
  if (need <= 0) return undefined;
  const start = mix(state.seed, d, dst.turns);
  const chosen =
    probe(state, d, start, need) ?? (dst.fetching.length === 0 ? search(state, d, start, need) : undefined);
  return chosen && { destination: d, source: chosen.source, piece: chosen.piece };
}
