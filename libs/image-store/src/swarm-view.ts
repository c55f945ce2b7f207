import * as path from 'node:path';
import type { PieceList } from './piece-list';
import type { StoreContext } from './store-context';
import { readSwarmPeers, swarmFolder } from './swarm-files';
import { hasPiece } from './swarm-record';

/**
 * Records of one image read for its view per look at most: a fan-out of up to this many copies in other
 * conductors is seen whole; a larger one through a random sample of this size, read anew at every look.
 */
export const SWARM_VIEW_MAX_RECORDS = 256;

/** What the records of an image's copies in progress in other conductors show, per piece. */
export interface SwarmView {
  /** Copies that have the piece verified or are reading it. */
  holders: Uint16Array;
  /** Copies that are reading it. */
  reading: Uint16Array;
  /** Records counted. */
  copies: number;
}

/**
 * The view of an image's copies in progress in other conductors, for the choices a copy makes with
 * what it cannot read from: which pieces are rare, and which ones its verified source leaves to copies
 * already reading them. A copy reads pieces from at most MAX_REMOTE_PEERS_PER_COPY of those copies, but
 * a piece another conductor's copy is reading from the origin must count whoever that copy is: with
 * only the copies joined in view (16 of 48), four conductors of one fan-out took the same pieces from
 * the origin, which sent 1.55 images (bench/RESULTS.md, row 16b).
 *
 * Built once per look (StoreContext.swarmReads) for all of this conductor's copies of the image: the
 * records it reads are the ones its copies re-read anyway, and each is read once per look whatever the
 * number of copies. Records of nodes `local` names (this conductor's copies, on its board) are left out.
 * A hint like the records: nothing in it is trusted for a byte.
 */
export function readSwarmView(
  store: StoreContext,
  list: PieceList,
  local: (node: string) => boolean,
): Promise<SwarmView> {
  // NUL is in no path: the key cannot be a record's or the folder's.
  const key = `${swarmFolder(store, list.imageId)}${path.sep}\0view ${list.sha256}`;
  return store.swarmReads.read(key, async () => {
    const count = list.pieces.length;
    const view: SwarmView = { holders: new Uint16Array(count), reading: new Uint16Array(count), copies: 0 };
    for (const peer of await readSwarmPeers(store, list, local, SWARM_VIEW_MAX_RECORDS)) {
      view.copies++;
      countHave(peer.have, view.holders);
      for (const index of peer.reading) {
        view.reading[index]!++;
        if (!hasPiece(peer.have, index)) view.holders[index]!++;
      }
    }
    return view;
  });
}

/**
 * Adds 1 to `counts` for each piece set in `have`, a byte at a time: a look reads up to 256 records, and
 * an image may have 262,144 pieces, mostly not yet held. Bits past the last piece (a record is untrusted)
 * count nowhere.
 */
function countHave(have: Uint8Array, counts: Uint16Array): void {
  for (let byte = 0; byte < have.length; byte++) {
    let bits = have[byte]!;
    while (bits !== 0) {
      const index = byte * 8 + (31 - Math.clz32(bits & -bits));
      if (index < counts.length) counts[index]!++;
      bits &= bits - 1;
    }
  }
}

/** A view of nothing, until the first one is read. */
export function emptySwarmView(count: number): SwarmView {
  return { holders: new Uint16Array(count), reading: new Uint16Array(count), copies: 0 };
}
