import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';
import type { LockHolder } from './lock-key';

/*
 * The entries of one lock key's folder (<node>/locks/<imageId>/):
 *   g-<n>/                  generation n of the exclusive gate, claimed with mkdir (only one process wins a
 *                           name, and names are never reused while they matter)
 *   g-<n>/h~<conductor>~<attempt>/   the gate holder's heartbeat (a proper-lockfile lock folder)
 *   g-<n>.released/         generation n was given back
 *   r~<conductor>~<attempt>/        a shared holder's heartbeat (a proper-lockfile lock folder)
 * The gate is held by the holder of the newest generation, until it is released or goes stale.
 * '~' cannot occur in ids, so names parse unambiguously.
 */

const GENERATION = /^g-(\d+)$/;
const RELEASED = /^g-(\d+)\.released$/;
const HOLDER_PREFIX = 'h~';
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
  /** Newest generation number, if any generation was ever claimed here. */
  newest?: number;
  newestReleased: boolean;
  /** Generations older than the newest, and their release markers: garbage. */
  superseded: string[];
  readers: string[];
}

/** Reads a key folder; a missing folder reads as empty (it was never used, or was removed by hand). */
export async function readKeyDirectory(dir: string, fs: LockFileSystem = nodeLockFileSystem): Promise<KeyDirectoryState> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { newestReleased: false, superseded: [], readers: [] };
    throw error;
  }
  let newest: number | undefined;
  const released = new Set<number>();
  const generations: number[] = [];
  const readers: string[] = [];
  for (const name of names) {
    let m = GENERATION.exec(name);
    if (m) {
      const n = Number(m[1]);
      generations.push(n);
      if (newest === undefined || n > newest) newest = n;
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
  const superseded: string[] = [];
  if (newest !== undefined) {
    for (const n of generations) if (n < newest) superseded.push(generationName(n));
    for (const n of released) if (n < newest) superseded.push(releasedName(n));
  }
  return { newest, newestReleased: newest !== undefined && released.has(newest), superseded, readers };
}

/** The holder entry inside a generation folder, if its holder got as far as creating it. */
export async function readGenerationHolder(genDir: string, fs: LockFileSystem = nodeLockFileSystem): Promise<string | undefined> {
  try {
    const names = await fs.readdir(genDir);
    return names.find((n) => n.startsWith(HOLDER_PREFIX) && parseHolderEntry(n));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * The first generation number of a fresh (or hand-removed) key folder. Seeding it from the wall clock
 * keeps generations increasing across such a reset, so a late marker or check from before the reset can
 * never match a newer generation; it is also the fencing token recorded in a published image's meta.
 * Milliseconds x 1000: a folder removed by hand and re-created within the same second (a copy of a few
 * hundred MB takes less) still gets a higher number, as long as its key saw fewer than 1000 hand-overs per
 * millisecond since it was created (about 1.8e15 today, well below Number.MAX_SAFE_INTEGER).
 */
export function firstGeneration(nowMs = Date.now()): number {
  return Math.floor(nowMs) * 1_000;
}
