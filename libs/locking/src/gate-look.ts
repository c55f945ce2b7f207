import * as path from 'node:path';
import { generationName, readGenerationHolder, readKeyDirectory } from './key-directory';
import type { LockFileSystem } from './lock-file-system';
import type { StalenessObserver } from './staleness-observer';

/** What one look at a key folder tells a claimant to do next. */
export type GateLook =
  /** No epoch yet (first use, or the folder was removed by hand): start a life of the folder. */
  | { next: 'start-epoch' }
  /** The gate is free (never claimed, released) or its holder was watched frozen: claim `generation`. */
  | { next: 'claim'; generation: number; tookOver: boolean }
  /** The gate is held: `beat` is the heartbeat (or the bare generation folder) being watched. */
  | { next: 'wait'; beat: string };

/**
 * One look at the key folder `dir`: its listing, the epoch's floor and, while the gate is held, its holder's
 * heartbeat. Every contender that reads the same state computes the same generation name, so only one
 * mkdir of it succeeds (docs/locking.md, "The protocol"). It only reads: what it decides is acted on by
 * the caller, outside the poll budget.
 */
export async function lookAtGate(
  dir: string,
  fs: LockFileSystem,
  observer: StalenessObserver,
): Promise<GateLook> {
  const state = await readKeyDirectory(dir, fs);
  if (state.floor === undefined) return { next: 'start-epoch' };
  if (state.newest === undefined) return { next: 'claim', generation: state.floor, tookOver: false };
  if (state.newestReleased) return { next: 'claim', generation: state.newest + 1, tookOver: false };
  const genDir = path.join(dir, generationName(state.newest));
  const entry = await readGenerationHolder(genDir, fs);
  const beat = entry ? path.join(genDir, entry) : genDir;
  if (!(await observer.isStale(beat))) return { next: 'wait', beat };
  return { next: 'claim', generation: state.newest + 1, tookOver: true };
}
