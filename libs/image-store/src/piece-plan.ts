/*
 * Which piece a holder reads next in a copy that reads one image from several verified holders at once
 * (piece-copy.ts runs it). Pure: a plan is plain data, every function returns or changes only it.
 *
 * - A holder is given the lowest piece nobody has or is reading: the verified pieces then grow from the
 *   front, so the contiguous verified prefix (what a resume checkpoint records) is never far behind.
 * - A holder that fails (its read, its lock, a piece whose sha256 is not the list's) is dropped for the
 *   rest of the copy, and the piece it was reading goes back to the others.
 * - Nothing is read twice at once: a piece is missing, being read by exactly one holder, or done.
 *
 * - With a `PieceChoice` (a copy that also reads from copies in progress, swarm-holders.ts): a holder is given,
 *   among the missing pieces it holds, the rarest among the copies in progress this copy sees, from a
 *   start drawn anew at each choice. The rule of libs/fanout's chooseFetch (rarest first, spread starts),
 *   decided here for one destination with what its own records show: destinations started at once ask
 *   their source for different pieces and then pass them to each other. The verified pieces are then
 *   scattered, so the contiguous prefix (the resume checkpoint) grows late.
 */

/** How a copy that reads from copies in progress chooses: who holds what, how rare, where to start. */
export interface PieceChoice {
  /** Whether the holder has piece `index` verified; absent: it has every piece (a published image). */
  has?: (index: number) => boolean;
  /** How many copies in progress this copy sees holding piece `index` (fewer: taken first). */
  rarity: (index: number) => number;
  /** The first piece looked at; the look wraps around. */
  offset: number;
  /** Pieces this holder is not asked for (a verified source: those a copy in progress read from has). */
  skip?: (index: number) => boolean;
}

export type PieceStatus = 'missing' | 'reading' | 'done';

export interface PiecePlan {
  status: PieceStatus[];
  /** The holder reading each piece ('reading' only). */
  readBy: Array<string | undefined>;
  /** Holders dropped, with why. */
  dropped: Map<string, string>;
  /** Pieces with status 'done' from index 0 on, without a gap. */
  donePrefix: number;
}

/** A plan for `count` pieces, the first `firstPiece` of which are already verified (a resumed prefix). */
export function createPiecePlan(count: number, firstPiece = 0): PiecePlan {
  const status = Array.from({ length: count }, (_, i): PieceStatus => (i < firstPiece ? 'done' : 'missing'));
  return { status, readBy: new Array(count).fill(undefined), dropped: new Map(), donePrefix: firstPiece };
}

/** The piece `holder` should read now (marked as read by it), or undefined: none left, or holder dropped. */
export function takePiece(plan: PiecePlan, holder: string, choice?: PieceChoice): number | undefined {
  const index = choosePiece(plan, holder, choice);
  if (index !== undefined) markReading(plan, index, holder);
  return index;
}

/** The piece `holder` should read now, the plan unchanged (takePiece without the mark). */
export function choosePiece(plan: PiecePlan, holder: string, choice?: PieceChoice): number | undefined {
  if (plan.dropped.has(holder)) return undefined;
  const index = choice ? rarestMissing(plan, choice) : plan.status.indexOf('missing', plan.donePrefix);
  return index === undefined || index < 0 ? undefined : index;
}

/** Piece `index` (missing) is being read by `holder`. */
export function markReading(plan: PiecePlan, index: number, holder: string): void {
  plan.status[index] = 'reading';
  plan.readBy[index] = holder;
}

/** The missing piece the holder has with the lowest rarity, the first from `offset` on among equals. */
function rarestMissing(plan: PiecePlan, choice: PieceChoice): number | undefined {
  const count = plan.status.length;
  let best: number | undefined;
  let bestRarity = Infinity;
  for (let step = 0; step < count; step++) {
    const index = (choice.offset + step) % count;
    if (plan.status[index] !== 'missing' || (choice.has && !choice.has(index))) continue;
    if (choice.skip?.(index)) continue;
    const rarity = choice.rarity(index);
    if (rarity < bestRarity) {
      best = index;
      bestRarity = rarity;
      if (rarity === 0) break;
    }
  }
  return best;
}

/** The piece arrived and its sha256 is the list's. */
export function pieceDone(plan: PiecePlan, index: number): void {
  plan.status[index] = 'done';
  plan.readBy[index] = undefined;
  while (plan.donePrefix < plan.status.length && plan.status[plan.donePrefix] === 'done') plan.donePrefix++;
}

/** Drops `holder` for good; the pieces it was reading go back to the others. */
export function dropHolder(plan: PiecePlan, holder: string, why: string): void {
  if (!plan.dropped.has(holder)) plan.dropped.set(holder, why);
  plan.readBy.forEach((reader, index) => {
    if (reader !== holder) return;
    plan.status[index] = 'missing';
    plan.readBy[index] = undefined;
  });
}

export function isComplete(plan: PiecePlan): boolean {
  return plan.donePrefix === plan.status.length;
}

/** Whether a holder with nothing to read should wait: some piece is still being read by another. */
export function othersReading(plan: PiecePlan): boolean {
  return plan.status.includes('reading');
}
