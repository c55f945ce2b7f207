import type { Dirent } from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { imageIdSchema, nodeIdSchema, parseField } from '@app/contracts';
import {
  generationName,
  holderEntryName,
  parseHolderEntry,
  readGenerationHolder,
  readKeyDirectory,
  readerEntryName,
} from './key-directory';
import type { LockHolder, LockMode } from './lock-key';
import type { LockKey } from './lock-key';
import { lockKeyDir, nodeLocksDir, validateLockKey } from './lock-key';

/** One lock entry as found on disk, for display (GET /locks, `icc cache ls`). */
export interface LockEntryView {
  node: string;
  imageId: string;
  /** exclusive: the holder of the newest unreleased generation of the key's gate; shared: a reader entry. */
  mode: LockMode;
  /** Undefined when a generation was claimed but its holder has not created its heartbeat entry yet. */
  holder?: LockHolder;
  /** The gate generation (also the fencing token) of an exclusive entry; undefined for readers. */
  generation?: number;
  /** The heartbeat's mtime. */
  heartbeatAt: string;
  /** now - heartbeat mtime, as this machine's clock sees it (may be negative under clock skew). */
  ageMs: number;
  /** 'stale' when ageMs >= staleMs. Informative only: see LOCK_INSPECTION_NOTE. */
  liveness: 'live' | 'stale';
}

export interface InspectLocksOptions {
  /** Only this node (a validated node id). */
  node?: string;
  /** Only this image (a validated image id). */
  imageId?: string;
  /** The lock stale time the display compares heartbeat ages with. */
  staleMs: number;
  /** At most this many entries (default 1000); the rest is counted in `truncated`. */
  limit?: number;
  /** The wall clock to compare mtimes with (tests). */
  now?: number;
  /**
   * Stop looking at further nodes once the scan has run this long: the answer then holds what was found
   * (`complete: false`), so a big cell still answers in time. Unset: no limit.
   */
  budgetMs?: number;
  /** The monotonic clock the budget is measured on (tests); performance.now by default. */
  monotonic?: () => number;
}

export interface LockInspection {
  entries: LockEntryView[];
  /** Entries left out because of `limit`. */
  truncated: number;
  /** False when the scan stopped at `budgetMs` before it saw every node: entries hold what it found. */
  complete: boolean;
  /** Nodes whose lock folders were read, of the nodes there are. */
  nodesScanned: number;
  nodesTotal: number;
  staleMs: number;
  inspectedAt: string;
}

export const LOCK_INSPECTION_NOTE =
  "liveness compares the heartbeat mtime with this machine's clock and is informative only; the locks themselves " +
  'judge staleness by watching an mtime stay unchanged for the stale time on their own monotonic clock, so clock ' +
  'skew between hosts cannot make them take over a live lock.';

const DEFAULT_LIMIT = 1000;

/** Who uses one key right now, as one listing of its folder shows it (see readLockActivity). */
export interface LockActivity {
  /** Shared holders (reader entries), whoever they are; a dead reader's entry counts until it is collected. */
  readers: LockHolder[];
  /** The newest gate generation is claimed and not released: a writer holds it, or waits for readers to leave. */
  exclusive: boolean;
  /** The newest gate generation (it changes with every exclusive claim); undefined when none was claimed. */
  generation?: number;
}

/**
 * One readdir of `<root>/<node>/locks/<imageId>/`, nothing taken or changed: how many readers a source
 * has (source selection balances on it) and whether a writer is there (the cache cleaner skips busy images
 * without touching the gate). A snapshot, informative only: decisions that need safety take the lock.
 */
export async function readLockActivity(root: string, key: LockKey): Promise<LockActivity> {
  const state = await readKeyDirectory(lockKeyDir(root, validateLockKey(key)));
  return {
    readers: state.readers
      .map((name) => parseHolderEntry(name))
      .filter((h): h is LockHolder => h !== undefined),
    exclusive: state.newest !== undefined && !state.newestReleased,
    generation: state.newest,
  };
}

/**
 * Reads the lock folders under `root` (CACHE_ROOT) without taking or changing anything. Node and image ids
 * are validated before they become path segments, only real directories are entered (never a symlink), and
 * entries that vanish while being read (a release, a garbage collection) are skipped: the answer is a
 * snapshot that can be slightly out of date, never an error caused by a lock changing under it.
 */
export async function inspectLocks(root: string, options: InspectLocksOptions): Promise<LockInspection> {
  const node = options.node === undefined ? undefined : parseField(nodeIdSchema, options.node, 'node');
  const imageId =
    options.imageId === undefined ? undefined : parseField(imageIdSchema, options.imageId, 'image');
  const now = options.now ?? Date.now();
  const limit = options.limit ?? DEFAULT_LIMIT;
  const nodes =
    node === undefined ? await listDirectories(root, (name) => nodeIdSchema.safeParse(name).success) : [node];
  const entries: LockEntryView[] = [];
  const monotonic = options.monotonic ?? (() => performance.now());
  const started = monotonic();
  let nodesScanned = 0;
  for (const n of nodes) {
    if (options.budgetMs !== undefined && monotonic() - started >= options.budgetMs) break;
    nodesScanned += 1;
    const locksDir = nodeLocksDir(root, n);
    if (!(await isRealDirectory(path.join(root, n))) || !(await isRealDirectory(locksDir))) continue;
    const images =
      imageId === undefined
        ? await listDirectories(locksDir, (name) => imageIdSchema.safeParse(name).success)
        : [imageId];
    const perImage = await Promise.all(
      images.map((image) => inspectKey(root, n, image, now, options.staleMs)),
    );
    for (const found of perImage) entries.push(...found);
  }
  entries.sort(compareEntries);
  return {
    entries: entries.slice(0, limit),
    truncated: Math.max(0, entries.length - limit),
    complete: nodesScanned === nodes.length,
    nodesScanned,
    nodesTotal: nodes.length,
    staleMs: options.staleMs,
    inspectedAt: new Date(now).toISOString(),
  };
}

async function inspectKey(
  root: string,
  node: string,
  imageId: string,
  now: number,
  staleMs: number,
): Promise<LockEntryView[]> {
  const dir = lockKeyDir(root, { node, imageId });
  if (!(await isRealDirectory(dir))) return [];
  const state = await readKeyDirectory(dir);
  const found: LockEntryView[] = [];
  const view = (mode: LockMode, mtimeMs: number, holder?: LockHolder, generation?: number): LockEntryView => {
    const ageMs = Math.round(now - mtimeMs);
    return {
      node,
      imageId,
      mode,
      holder,
      generation,
      heartbeatAt: new Date(mtimeMs).toISOString(),
      ageMs,
      liveness: ageMs >= staleMs ? 'stale' : 'live',
    };
  };
  if (state.newest !== undefined && !state.newestReleased) {
    const genDir = path.join(dir, generationName(state.newest));
    const genStat = await lstatDirectory(genDir);
    if (genStat) {
      const entry = await readGenerationHolder(genDir);
      const beat = entry ? await lstatDirectory(path.join(genDir, entry)) : undefined;
      found.push(
        view(
          'exclusive',
          (beat ?? genStat).mtimeMs,
          entry ? parseHolderEntry(entry) : undefined,
          state.newest,
        ),
      );
    }
  }
  for (const reader of state.readers) {
    const beat = await lstatDirectory(path.join(dir, reader));
    if (beat) found.push(view('shared', beat.mtimeMs, parseHolderEntry(reader)));
  }
  return found;
}

/**
 * The heartbeat an entry's liveness is judged by (the holder's or reader's lock folder; a generation's own
 * folder while its holder entry is not there yet), for callers that watch it themselves.
 */
export function lockEntryPath(root: string, entry: LockEntryView): string {
  const dir = lockKeyDir(root, validateLockKey(entry));
  if (entry.mode === 'shared') return path.join(dir, readerEntryName(entry.holder!));
  const generation = path.join(dir, generationName(entry.generation!));
  return entry.holder ? path.join(generation, holderEntryName(entry.holder)) : generation;
}

/** Names of the real (non-symlink) directories in `dir` that pass `accept`; [] when `dir` is missing. */
async function listDirectories(dir: string, accept: (name: string) => boolean): Promise<string[]> {
  let entries: Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch (error) {
    if (isMissing(error)) return [];
    throw error;
  }
  return entries
    .filter((e) => e.isDirectory() && accept(e.name))
    .map((e) => e.name)
    .sort();
}

async function lstatDirectory(target: string) {
  try {
    const stat = await fsp.lstat(target);
    return stat.isDirectory() ? stat : undefined;
  } catch (error) {
    if (isMissing(error)) return undefined;
    throw error;
  }
}

async function isRealDirectory(target: string): Promise<boolean> {
  return (await lstatDirectory(target)) !== undefined;
}

function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function compareEntries(a: LockEntryView, b: LockEntryView): number {
  return (
    a.node.localeCompare(b.node) ||
    a.imageId.localeCompare(b.imageId) ||
    (a.mode === b.mode ? 0 : a.mode === 'exclusive' ? -1 : 1) ||
    (a.holder?.conductorId ?? '').localeCompare(b.holder?.conductorId ?? '') ||
    (a.holder?.attemptId ?? '').localeCompare(b.holder?.attemptId ?? '')
  );
}
