/*
 * What one holder's loop of a piece copy does next (piece-copy.ts runs it for real copies,
 * bench/swarm-simulation.ts for simulated ones): a pure function of the copy's plan and what the caller
 * counted. The rules, in their order:
 *
 * - Stop when the copy failed or is complete, or the holder was dropped.
 * - Admission (a swarm copy with a write cap): another read starts only while the rates the reads in flight
 *   are counted at add up to less than the write cap, and always when none is in flight. More would only
 *   slow every read down while holding its holder's read slot. The caller computes the sum.
 * - A read slot of the holder's node, per piece (NODE_READ_LIMIT), before the piece is chosen.
 * - The piece: from a copy in progress, the rarest missing piece it has; from a verified holder, the rarest
 *   missing piece no copy in progress read from has and no other copy is reading (`seedOnly`): its bytes
 *   seed the copies, who pass pieces on. When that leaves nothing while this copy reads nothing and has
 *   read nothing for a look's time (`starved`), any missing piece: a copy is never idle while its source
 *   holds what it lacks.
 * - Nothing to read: a copy without a swarm stops unless another holder still reads (its piece may come
 *   back); a swarm copy waits for the next look or read to end.
 */
import { type PieceChoice, type PiecePlan, choosePiece, isComplete, othersReading } from './piece-plan';

export type PieceTurn =
  | { kind: 'stop' }
  /** The reads in flight fill the write cap: wait for a change (a read that ends, a look). */
  | { kind: 'wait-room' }
  /** A read slot of the holder's node is needed first: take one and ask again with `slotHeld`. */
  | { kind: 'take-slot' }
  | { kind: 'read'; index: number }
  /** Nothing to read from this holder now (give the slot back): wait for a change. */
  | { kind: 'wait' };

export interface TurnSwarm {
  choice: Omit<PieceChoice, 'has' | 'skip'>;
  /** Pieces a verified holder leaves to the copies in progress (see above). */
  seedOnly: (index: number) => boolean;
  /** Read slots are taken per piece (the caller has a slot per node to take). */
  perPieceSlots: boolean;
  /** The rate a new read from this holder may expect (0: no cap), and the destination's write cap (0: none). */
  expectedRate: number;
  writeBps: number;
  /** Nothing read for a whole look's time. */
  starved: boolean;
}

export interface TurnInput {
  plan: PiecePlan;
  /** The holder: a copy in progress has `partial` (what it has verified); a verified holder has every piece. */
  holder: { node: string; partial?: { has: (index: number) => boolean } };
  failed: boolean;
  /** The reads in flight of this copy: how many, and the sum of the rates the caller counts them at. */
  inFlight: { count: number; sum: number };
  swarm?: TurnSwarm;
  /** The caller holds a read slot of the holder's node for this turn. */
  slotHeld: boolean;
}

export function pieceTurn(input: TurnInput): PieceTurn {
  const { plan, holder, swarm } = input;
  if (input.failed || isComplete(plan) || plan.dropped.has(holder.node)) return { kind: 'stop' };
  if (swarm && !roomForAnotherRead(swarm, input.inFlight)) return { kind: 'wait-room' };
  if (swarm?.perPieceSlots && !input.slotHeld) return { kind: 'take-slot' };
  const index = pieceFrom(input);
  if (index !== undefined) return { kind: 'read', index };
  if (!swarm && !othersReading(plan)) return { kind: 'stop' };
  return { kind: 'wait' };
}

/** The write-cap rule over the reads in flight (chooseFetch's rule in libs/fanout). */
export function roomForAnotherRead(
  swarm: Pick<TurnSwarm, 'expectedRate' | 'writeBps'>,
  inFlight: { count: number; sum: number },
): boolean {
  if (swarm.writeBps <= 0 || swarm.expectedRate <= 0 || inFlight.count === 0) return true;
  return inFlight.sum < swarm.writeBps;
}

function pieceFrom({ plan, holder, swarm, inFlight }: TurnInput): number | undefined {
  if (!swarm) return choosePiece(plan, holder.node);
  if (holder.partial) return choosePiece(plan, holder.node, { ...swarm.choice, has: holder.partial.has });
  const seed = choosePiece(plan, holder.node, { ...swarm.choice, skip: swarm.seedOnly });
  if (seed !== undefined || inFlight.count > 0 || !swarm.starved) return seed;
  return choosePiece(plan, holder.node, swarm.choice);
}
