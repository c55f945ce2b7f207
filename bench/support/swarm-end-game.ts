/*
 * The end game of bench/support/swarm-model.ts: which copies in progress a copy joins at one of its looks,
 * as libs/image-store/src/swarm-holders.ts's `discover(wanted)` decides for the copies of one conductor.
 * - The others are looked at in random order (the product shuffles the board's copies). A copy not joined
 *   yet is joined while this copy has joined fewer than MAX_PEERS_PER_COPY, or fewer than that plus
 *   END_GAME_PEERS when it holds (has verified, not only reading) a wanted piece: one this copy misses
 *   (not even reading it) and none of its peers holds (piece-copy.ts's `wanted`).
 * - "Joined" counts every copy ever joined, those finished since included: the cap is reached once, for
 *   the rest of the copy. The wanted pieces are listed once per look, before the joins of that look, so
 *   one look may join up to 8 copies that hold the same piece.
 * - The look's first call in the product (before the first read) passes no `wanted`: in the model every
 *   copy has its 16 peers from time 0, so that call has nothing to add.
 */
import { MAX_PEERS_PER_COPY } from '@app/image-store';

/** END_GAME_PEERS of libs/image-store/src/swarm-holders.ts (not exported there): keep the two equal. */
export const END_GAME_PEERS = 8;

export interface EndGameLook {
  /** The other copies in progress (the board's, this copy left out). */
  others: () => number[];
  /** The copies this copy joined (its peers), finished ones included. */
  joined: ReadonlySet<number>;
  pieceCount: number;
  wanted: (index: number) => boolean;
  /** Whether copy `node` has piece `index` verified. */
  has: (node: number, index: number) => boolean;
  random: () => number;
}

/** The copies joined at this look, in the order they were joined. */
export function endGameJoins(look: EndGameLook): number[] {
  const cap = MAX_PEERS_PER_COPY + END_GAME_PEERS;
  let size = look.joined.size;
  if (size >= cap) return [];
  let wantedPieces: number[] | undefined;
  const wanted = () =>
    (wantedPieces ??= Array.from({ length: look.pieceCount }, (_, i) => i).filter(look.wanted));
  const holdsWanted = (node: number) => wanted().some((i) => look.has(node, i));
  // Past the cap with nothing wanted, no copy can be joined (the shuffle would only spend the draws).
  if (size >= MAX_PEERS_PER_COPY && wanted().length === 0) return [];
  const others = look.others();
  const found: number[] = [];
  // A lazy shuffle: the first candidates of a random order, drawn one by one until the cap is reached.
  for (let i = 0; i < others.length && size < cap; i++) {
    const j = i + Math.floor(look.random() * (others.length - i));
    const node = others[j]!;
    others[j] = others[i]!;
    others[i] = node;
    if (look.joined.has(node)) continue;
    if (size >= MAX_PEERS_PER_COPY && !holdsWanted(node)) continue;
    found.push(node);
    size++;
  }
  return found;
}
