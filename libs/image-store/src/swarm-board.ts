import { hasPiece } from './swarm-record';

/**
 * This process's copies in progress, by image (sha256 included): what each has verified and what it is
 * reading now. Copies of one image in one conductor see each other here at once, without the shared
 * folder's records and their delay, and count the pieces the others are reading as taken: a verified
 * source then sends each piece out once, not once per copy that asked for it at the same moment
 * (bench/RESULTS.md: the source's sends are what a fan-out's time is made of). Copies in other conductors
 * are seen through their records only (swarm-files.ts).
 */
export class SwarmBoard {
  private readonly images = new Map<string, Set<BoardEntry>>();

  /** Adds a copy; `leave` (once) takes it off the board. */
  join(key: string, entry: Omit<BoardEntry, 'left'>): { entry: BoardEntry; leave: () => void } {
    const full: BoardEntry = { ...entry, left: false };
    const copies = this.images.get(key) ?? new Set();
    copies.add(full);
    this.images.set(key, copies);
    return {
      entry: full,
      leave: () => {
        full.left = true;
        copies.delete(full);
        if (copies.size === 0 && this.images.get(key) === copies) this.images.delete(key);
      },
    };
  }

  /** The other copies of the image here. */
  others(key: string, self: BoardEntry): BoardEntry[] {
    return [...(this.images.get(key) ?? [])].filter((e) => e !== self);
  }

  /** Whether another copy here is reading piece `index` now. */
  readingElsewhere(key: string, self: BoardEntry, index: number): boolean {
    for (const e of this.images.get(key) ?? []) if (e !== self && e.reading.has(index)) return true;
    return false;
  }

  /** How many other copies here have piece `index` verified or are reading it. */
  holdersOf(key: string, self: BoardEntry, index: number): number {
    let n = 0;
    for (const e of this.images.get(key) ?? [])
      if (e !== self && (hasPiece(e.have, index) || e.reading.has(index))) n++;
    return n;
  }
}

export interface BoardEntry {
  node: string;
  attemptId: string;
  partialPath: string;
  /** Verified pieces in the partial (the same bitmap its record is written from). */
  have: Uint8Array;
  /** Pieces it is reading now (the set its record is written from). */
  reading: Set<number>;
  left: boolean;
}

/** The board key of an image: its id and its bytes (two versions of one id are two swarms). */
export function boardKey(imageId: string, sha256: string): string {
  return `${imageId}\n${sha256}`;
}
