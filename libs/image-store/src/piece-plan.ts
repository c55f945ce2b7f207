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
 * libs/fanout's chooseFetch is not used: it decides for a fan-out's many destinations and partial holders
 * (rarest first, from a seeded start that rotates every turn). Here every holder is complete, so every
 * piece is as rare as the others and its rotation would only scatter the verified pieces, leaving the
 * checkpoint's contiguous prefix near zero until the very end.
 */

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
export function takePiece(plan: PiecePlan, holder: string): number | undefined {
  if (plan.dropped.has(holder)) return undefined;
  const index = plan.status.indexOf('missing', plan.donePrefix);
  if (index < 0) return undefined;
  plan.status[index] = 'reading';
  plan.readBy[index] = holder;
  return index;
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
