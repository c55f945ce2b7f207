import * as path from 'node:path';
import { type LockFileSystem, isGone, nodeLockFileSystem } from './lock-file-system';
import type { LockHolder } from './lock-key';

/*
 * The entries of one lock key's folder (<node>/locks/<imageId>/):
 *   epoch/                  made once per life of the key folder (mkdir; nothing is ever put inside it, so its
 *                           mtime never changes); its mtime in microseconds is the floor F of the generations
 *   g-<n>/                  generation n of the exclusive gate, claimed with mkdir; counts only while n >= F
 *   g-<n>/h~<conductor>~<attempt>/   the gate holder's heartbeat (a proper-lockfile lock folder)
 *   g-<n>.released/         generation n was given back
 *   r~<conductor>~<attempt>/        a shared holder's heartbeat (a proper-lockfile lock folder)
 *   c~<conductor>~<attempt>/        a claimant's probe of the file system's clock, removed at once (fs-clock.ts)
 * The gate is held by the holder of the newest generation at or above the floor, until it is released or
 * goes stale. The first generation is F itself: every contender that finds no generation computes that same
 * name, so exactly one mkdir wins it. A folder removed by hand gets a new epoch, made later, so a higher
 * floor (no generation is made before the clock is past it, fs-clock.ts): numbers keep growing, and a
 * claim made from a listing of the removed folder falls below the floor.
 * '~' cannot occur in ids, so names parse unambiguously.
 */

const GENERATION = /^g-(\d+)$/;
const RELEASED = /^g-(\d+)\.released$/;
const HOLDER_PREFIX = 'h~';
export const EPOCH_NAME = 'epoch';
const READER_PREFIX = 'r~';

export function generationName(generation: number): string {
  return `g-${generation}`;
}

export function releasedName(generation: number): string {
  return `g-${generation}.released`;
}

export function holderEntryName(holder: LockHolder): string {
  return `${HOLDER_PREFIX}${holder.conductorId}~${holder.attemptId}`;
}

export function readerEntryName(holder: LockHolder): string {
  return `${READER_PREFIX}${holder.conductorId}~${holder.attemptId}`;
}

export function parseHolderEntry(name: string): LockHolder | undefined {
  const prefix = name.startsWith(HOLDER_PREFIX) || name.startsWith(READER_PREFIX);
  if (!prefix) return undefined;
  const parts = name.slice(2).split('~');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
  return { conductorId: parts[0], attemptId: parts[1] };
}

export interface KeyDirectoryState {
  /** The floor of this life of the key folder (the epoch's mtime in µs); undefined while there is no epoch. */
  floor?: number;
  /** Newest generation number at or above the floor, if one was claimed. */
  newest?: number;
  newestReleased: boolean;
  /** Generations older than the newest, and their release markers: garbage. */
  superseded: string[];
  readers: string[];
}

/**
 * Reads a key folder; a missing folder reads as empty (it was never used, or was removed by hand).
 * Generations below the floor (made from a listing of an earlier life of the folder) count as garbage.
 */
export async function readKeyDirectory(
  dir: string,
  fs: LockFileSystem = nodeLockFileSystem,
): Promise<KeyDirectoryState> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    if (isGone(error)) return { newestReleased: false, superseded: [], readers: [] };
    throw error;
  }
  const floor = names.includes(EPOCH_NAME) ? await readFloor(path.join(dir, EPOCH_NAME), fs) : undefined;
  let newest: number | undefined;
  const released = new Set<number>();
  const generations: number[] = [];
  const readers: string[] = [];
  for (const name of names) {
    let m = GENERATION.exec(name);
    if (m) {
      const n = Number(m[1]);
      generations.push(n);
      if (floor !== undefined && n >= floor && (newest === undefined || n > newest)) newest = n;
      continue;
    }
    m = RELEASED.exec(name);
    if (m) {
      released.add(Number(m[1]));
      continue;
    }
    if (name.startsWith(READER_PREFIX) && parseHolderEntry(name)) readers.push(name);
    // Anything else (an operator's stray file, a foreign tool's entry) is ignored, never trusted.
  }
  // Garbage: everything below the newest valid generation, or below the floor while there is none yet.
  // Names only ever grow, so no later claim can make one of these count again.
  const superseded: string[] = [];
  const below = newest ?? floor;
  if (below !== undefined) {
    for (const n of generations) if (n < below) superseded.push(generationName(n));
    for (const n of released) if (n < below) superseded.push(releasedName(n));
  }
  return { floor, newest, newestReleased: newest !== undefined && released.has(newest), superseded, readers };
}

/** The holder entry inside a generation folder, if its holder got as far as creating it. */
export async function readGenerationHolder(
  genDir: string,
  fs: LockFileSystem = nodeLockFileSystem,
): Promise<string | undefined> {
  try {
    const names = await fs.readdir(genDir);
    return names.find((n) => n.startsWith(HOLDER_PREFIX) && parseHolderEntry(n));
  } catch (error) {
    if (isGone(error)) return undefined;
    throw error;
  }
}

/** The epoch's mtime in microseconds (a safe integer until the year 2255); undefined when it is gone. */
async function readFloor(epoch: string, fs: LockFileSystem): Promise<number | undefined> {
  try {
    return Number((await fs.stat(epoch)).mtimeNs / 1000n);
  } catch (error) {
    if (isGone(error)) return undefined;
    throw error;
  }
}
