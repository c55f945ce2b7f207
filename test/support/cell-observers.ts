import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { isReasonError } from '@app/contracts';
import { ImageStore, parseTmpName } from '@app/image-store';
import {
  DEFAULT_LOCK_TIMINGS,
  type LockEntryView,
  type LockFileSystem,
  NodeLockManager,
  inspectLocks,
} from '@app/locking';
import { sha256OfFile } from './image-store-fixtures';
import { sleep } from './async';

/*
 * The tests' one set of oracles for a cell (e2e tests and campaigns alike): independent observers that
 * read the shared folder the way any other process would (stat, readdir, sha256 of their own), never
 * through the conductor's code paths; lock state is read with the lock library's own inspector.
 */

export interface ExpectedImage {
  size: number;
  sha256: string;
}

/**
 * The reader loop of "no destination is ever seen half-written": round after round it stats every final
 * path it watches; whenever a file is there it must have the full size, and every new file (inode) found
 * there is hashed once, independently, and must have the source's sha256.
 */
export class FinalPathsWatcher {
  readonly problems: string[] = [];
  rounds = 0;
  looks = 0;
  hashed = 0;
  private readonly paths = new Map<string, ExpectedImage>();
  private readonly seen = new Map<string, Set<string>>();
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(private readonly intervalMs = 20) {
    this.loop = this.run();
  }

  watch(file: string, expected: ExpectedImage): void {
    this.paths.set(file, expected);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      for (const [file, expected] of this.paths) {
        if (this.stopped) break;
        try {
          const stat = await fsp.stat(file, { bigint: true });
          this.looks++;
          if (Number(stat.size) !== expected.size) {
            this.problems.push(`${file}: ${stat.size} bytes at the final path (expected ${expected.size})`);
            continue;
          }
          const identity = `${stat.dev}:${stat.ino}:${stat.ctimeNs}`;
          const seen = this.seen.get(file) ?? new Set<string>();
          this.seen.set(file, seen);
          if (seen.has(identity)) continue;
          seen.add(identity);
          const sha256 = await sha256OfFile(file);
          this.hashed++;
          if (sha256 !== expected.sha256)
            this.problems.push(`${file}: sha256 ${sha256} at the final path (expected ${expected.sha256})`);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
            this.problems.push(`${file}: ${String(error)}`);
        }
      }
      this.rounds++;
      await sleep(this.intervalMs);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/**
 * The "nothing corrupt" oracle after a run: every requested destination (`<imageId>|<node>`) hashed
 * independently against its seed, with a meta that describes it, and every seeded source unchanged.
 * Returns how many destinations failed; each problem is added to `violations`.
 */
export async function verifyCopies(
  store: ImageStore,
  requested: Iterable<string>,
  seeds: ReadonlyMap<string, ExpectedImage & { node: string }>,
  violations: string[],
): Promise<number> {
  let corrupt = 0;
  for (const key of requested) {
    const [imageId, destination] = key.split('|') as [string, string];
    const expected = seeds.get(imageId)!;
    const sha256 = await sha256OfFile(store.entries.imagePath(destination, imageId)).catch(
      (error: Error) => `unreadable: ${error.message}`,
    );
    if (sha256 !== expected.sha256 || !(await store.copies.verifiedImage(destination, imageId, expected))) {
      corrupt++;
      violations.push(
        `${imageId} on ${destination}: sha256 ${sha256} (expected ${expected.sha256}) or its meta does not match`,
      );
    }
  }
  for (const [imageId, seed] of seeds)
    if ((await sha256OfFile(store.entries.imagePath(seed.node, imageId))) !== seed.sha256)
      violations.push(`source ${imageId} changed`);
  return corrupt;
}

export interface Overlap {
  node: string;
  imageId: string;
  attempts: Array<{ attemptId: string; conductorId?: string; bytes: number }>;
  /** real: two writers at once; residual: one of them had just been resumed from SIGSTOP (see below). */
  kind: 'real' | 'residual';
  atMs: number;
}

/**
 * The overlap detector of the conductor campaigns: two holders of one destination lock writing at once
 * show as two partial copies (`<dest>/tmp/<imageId>~<attemptId>.part`) of the same image that both grew
 * between two looks. Each attempt is mapped to its conductor through the lock folder (the holder entry
 * `h~<conductor>~<attempt>` carries the same attempt id as the partial file).
 *
 * `resumedRecently(conductorId)` classifies: a holder resumed from SIGSTOP may write the chunk it had in
 * flight before its watchdog (every LOCK_UPDATE_MS) notices the loss; that chunk goes to a file the new
 * holder normally has already removed (invisible here), but if not, it is the documented residual window,
 * not two holders that both passed a check. Anything else is 'real', and a campaign fails on it.
 */
export class TmpOverlapSampler {
  readonly overlaps: Overlap[] = [];
  samples = 0;
  /** Most data partial copies seen at once for one (node, image). */
  maxPartsPerImage = 0;
  private readonly sizes = new Map<string, number>();
  private readonly conductorOfAttempt = new Map<string, string>();
  private stopped = false;
  private readonly loop: Promise<void>;
  private readonly started = performance.now();

  constructor(
    private readonly root: string,
    private readonly nodes: string[],
    private readonly resumedRecently: (conductorId: string) => boolean,
    private readonly intervalMs = 25,
  ) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await this.sample().catch(() => undefined);
      this.samples++;
      await sleep(this.intervalMs);
    }
  }

  private async sample(): Promise<void> {
    const current = new Map<string, number>();
    const grown = new Map<string, Array<{ attemptId: string; bytes: number }>>();
    const partsPerImage = new Map<string, number>();
    for (const node of this.nodes) {
      const dir = path.join(this.root, node, 'tmp');
      const names = await fsp.readdir(dir).catch(() => [] as string[]);
      for (const name of names) {
        const parsed = parseDataPart(name);
        if (!parsed) continue;
        const stat = await fsp.stat(path.join(dir, name)).catch(() => undefined);
        if (!stat) continue;
        const key = `${node}/${name}`;
        current.set(key, stat.size);
        const imageKey = `${node}/${parsed.imageId}`;
        partsPerImage.set(imageKey, (partsPerImage.get(imageKey) ?? 0) + 1);
        if (!this.conductorOfAttempt.has(parsed.attemptId))
          await this.mapAttempt(node, parsed.imageId, parsed.attemptId);
        const before = this.sizes.get(key);
        if (before !== undefined && stat.size > before)
          grown.set(imageKey, [
            ...(grown.get(imageKey) ?? []),
            { attemptId: parsed.attemptId, bytes: stat.size },
          ]);
      }
    }
    for (const n of partsPerImage.values()) this.maxPartsPerImage = Math.max(this.maxPartsPerImage, n);
    for (const [imageKey, writers] of grown) {
      if (writers.length < 2) continue;
      const [node, imageId] = splitOnce(imageKey, '/');
      const attempts = writers.map((w) => ({ ...w, conductorId: this.conductorOfAttempt.get(w.attemptId) }));
      const residual = attempts.some(
        (a) => a.conductorId !== undefined && this.resumedRecently(a.conductorId),
      );
      this.overlaps.push({
        node,
        imageId,
        attempts,
        kind: residual ? 'residual' : 'real',
        atMs: Math.round(performance.now() - this.started),
      });
    }
    this.sizes.clear();
    for (const [k, v] of current) this.sizes.set(k, v);
  }

  /** The conductor an attempt id (a partial file's tag) belonged to, if it was seen in a lock folder. */
  conductorOf(attemptId: string): string | undefined {
    return this.conductorOfAttempt.get(attemptId);
  }

  /** The holder entry of the key's generations that carries this attempt id. */
  private async mapAttempt(node: string, imageId: string, attemptId: string): Promise<void> {
    const keyDir = path.join(this.root, node, 'locks', imageId);
    for (const gen of await fsp.readdir(keyDir).catch(() => [] as string[])) {
      if (!/^g-\d+$/.test(gen)) continue;
      for (const entry of await fsp.readdir(path.join(keyDir, gen)).catch(() => [] as string[])) {
        const m = /^h~([^~]+)~(.+)$/.exec(entry);
        if (m && m[2] === attemptId) {
          this.conductorOfAttempt.set(attemptId, m[1]!);
          return;
        }
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

/**
 * `<imageId>~<attemptId>.part` of an image copy (meta files and piece lists are written through
 * `~meta-<uuid>.part` and `~pieces-<uuid>.part`, a partial's record is `~<attemptId>.origin.part`: none is
 * image data).
 */
function parseDataPart(name: string): { imageId: string; attemptId: string } | undefined {
  const m = /^(.+)~(.+)\.part$/.exec(name);
  if (!m || /^(meta|pieces)-/.test(m[2]!) || m[2]!.endsWith('.origin')) return undefined;
  return { imageId: m[1]!, attemptId: m[2]! };
}

function splitOnce(s: string, sep: string): [string, string] {
  const i = s.indexOf(sep);
  return [s.slice(0, i), s.slice(i + 1)];
}

/** Names of the files in a node's tmp/ folder (none when it has no such folder). */
function tmpNames(root: string, node: string): Promise<string[]> {
  return fsp.readdir(path.join(root, node, 'tmp')).catch(() => [] as string[]);
}

/** Files under every node's tmp/ folder, as `<node>/tmp/<name>`. */
export async function tmpLeftovers(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const node of await fsp.readdir(root).catch(() => [] as string[]))
    for (const name of await tmpNames(root, node)) out.push(`${node}/tmp/${name}`);
  return out.sort();
}

/**
 * The partial copies' data files in a node's tmp folder: not the records a resumable copy keeps beside
 * them, nor the short-lived files a record, meta or piece list is written to before its rename
 * (`<id>~meta-<uuid>.part`, which exists for a moment before a copy's first byte, `<id>~pieces-<uuid>.part`).
 */
export async function partialCopies(
  root: string,
  node: string,
): Promise<Array<{ name: string; size: number }>> {
  return (await tmpFiles(root, node)).filter(
    (f) => !f.name.endsWith('.origin.part') && !/^(meta|pieces)-/.test(parseTmpName(f.name)?.tag ?? ''),
  );
}

/** Every file in a node's tmp folder (partial copies and their records), with their sizes. */
export async function tmpFiles(root: string, node: string): Promise<Array<{ name: string; size: number }>> {
  const out: Array<{ name: string; size: number }> = [];
  for (const name of await tmpNames(root, node)) {
    const stat = await fsp.stat(path.join(root, node, 'tmp', name)).catch(() => undefined);
    if (stat) out.push({ name, size: stat.size });
  }
  return out;
}

export interface LockLeftover {
  node: string;
  imageId: string;
  mode: 'exclusive' | 'shared';
  conductorId?: string;
  attemptId?: string;
  generation?: number;
}

/** Every lock entry still held on disk (an unreleased newest generation, or a reader entry `r~`). */
export async function lockLeftovers(
  root: string,
  staleMs: number = DEFAULT_LOCK_TIMINGS.staleMs,
): Promise<LockLeftover[]> {
  const { entries } = await inspectLocks(root, { staleMs, limit: 100_000 });
  return entries.map((e: LockEntryView) => ({
    node: e.node,
    imageId: e.imageId,
    mode: e.mode,
    conductorId: e.holder?.conductorId,
    attemptId: e.holder?.attemptId,
    generation: e.generation,
  }));
}

/**
 * The lock leftovers as one line each (generations below a key's floor do not count): a reader entry
 * still there, or a key whose newest generation is not released. [] means no lock is held by anyone.
 */
export async function heldLockEntries(root: string): Promise<string[]> {
  return (await lockLeftovers(root)).map((l) =>
    l.mode === 'exclusive'
      ? `${l.node}/locks/${l.imageId}/g-${l.generation} not released`
      : `${l.node}/locks/${l.imageId}/r~${l.conductorId}~${l.attemptId}`,
  );
}

export interface SweepResult {
  keys: number;
  tookOver: number;
  tmpRemoved: number;
  /** Rounds of a key that lost their own lock and took the key again. */
  lostAndRetried: number;
  sweepMs: number;
}

/** How often the last round takes a key again after losing its own lock on it. */
const SWEEP_ATTEMPTS = 3;

/**
 * The "last round" for leftovers of killed holders: what the next copy into a node, or the cache cleaner,
 * does when it needs a key: take it exclusively (a dead holder's generation is taken over once its
 * heartbeat has been seen frozen for the stale time; dead readers are removed by the gate holder), remove
 * the partial files of that image (any partial file is a dead attempt's while we hold the key), release.
 * Every key must be taken within the stale time plus a little: this is the "every waiter gets it" promise
 * for a cell whose holders were killed. A round that loses its own lock is tried again (`lostAndRetried`).
 */
export async function sweepKeys(
  root: string,
  keys: Array<{ node: string; imageId: string }>,
  timings: { staleMs: number; updateMs: number; safetyMarginMs: number; pollMs: number },
  /** The lock protocol's file calls (a seam: tests stall one step); node's fs by default. */
  lockFs?: LockFileSystem,
): Promise<SweepResult> {
  const started = performance.now();
  const unique = [...new Map(keys.map((k) => [`${k.node}/${k.imageId}`, k])).values()];
  const locks = new NodeLockManager({ root, conductorId: 'campaign-sweeper', timings, fs: lockFs });
  const store = new ImageStore({ root, fsync: false });
  let tookOver = 0;
  let tmpRemoved = 0;
  let lostAndRetried = 0;
  const sweepKey = async (key: { node: string; imageId: string }): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        const held = await locks.acquire(
          { ...key, mode: 'exclusive' },
          { timeoutMs: timings.staleMs * 3 + 5_000 },
        );
        try {
          if (held.tookOverStale) tookOver++;
          tmpRemoved += await store.entries.removeLeftoverTmp(key.node, key.imageId);
        } finally {
          await held.release();
        }
        return;
      } catch (error) {
        // This process holds locks too: stalled past its heartbeat's trust window (a loaded machine), it
        // loses them for good (LOCK_LOST), as a conductor does, and tries again, as the next copy would.
        if (!isReasonError(error, 'LOCK_LOST') || attempt >= SWEEP_ATTEMPTS) throw error;
        lostAndRetried++;
      }
    }
  };
  // Every key is tried before the caller looks at what is left, even when one of them fails.
  const failed = (await Promise.allSettled(unique.map(sweepKey))).filter(
    (r): r is PromiseRejectedResult => r.status === 'rejected',
  );
  if (failed.length > 0) throw failed[0]!.reason;
  return {
    keys: unique.length,
    tookOver,
    tmpRemoved,
    lostAndRetried,
    sweepMs: Math.round(performance.now() - started),
  };
}

/** The image id a tmp leftover `<node>/tmp/<imageId>~<tag>.part` belongs to. */
export function tmpLeftoverKey(leftover: string): { node: string; imageId: string } | undefined {
  const m = /^([^/]+)\/tmp\/(.+)~[^~]+\.part$/.exec(leftover);
  return m ? { node: m[1]!, imageId: m[2]! } : undefined;
}

/** What `judgeLeftovers` found once the cell was idle, and what its last round did. */
export interface LeftoverJudgement {
  lockLeft: LockLeftover[];
  tmpLeft: string[];
  sweep?: SweepResult;
  afterSweep: { locks: string[]; tmp: string[] };
}

/**
 * The campaigns' leftover oracle, once the cell is idle: a lock entry or a partial file may remain only if
 * it belongs to a conductor in `killed` (a partial is mapped to its conductor through `conductorOf`, the
 * overlap sampler's attempt map); then a last round (`sweepKeys`) takes every affected key, and afterwards
 * nothing at all may be left. Each breach is pushed to `violations`.
 */
export async function judgeLeftovers(
  root: string,
  killed: ReadonlySet<string>,
  conductorOf: (attemptId: string) => string | undefined,
  timings: { staleMs: number; updateMs: number; safetyMarginMs: number; pollMs: number },
  violations: string[],
): Promise<LeftoverJudgement> {
  const lockLeft = await lockLeftovers(root, timings.staleMs);
  for (const l of lockLeft) {
    const byKilled = l.conductorId === undefined ? killed.size > 0 : killed.has(l.conductorId);
    if (!byKilled)
      violations.push(`lock entry left by a conductor that was not killed: ${JSON.stringify(l)}`);
  }
  const tmpLeft = await tmpLeftovers(root);
  for (const t of tmpLeft) {
    // A partial's record (`~<attemptId>.origin.part`) belongs to the attempt of its partial.
    const tag = /~([^~]+?)(\.origin)?\.part$/.exec(t)?.[1];
    const owner = tag && !/^(meta|pieces)-/.test(tag) ? conductorOf(tag) : undefined;
    const byKilled = owner === undefined ? killed.size > 0 : killed.has(owner);
    if (!byKilled)
      violations.push(`partial file left by a conductor that was not killed (${owner ?? 'unknown'}): ${t}`);
  }
  const sweep = await sweepKeys(
    root,
    [
      ...lockLeft.map((l) => ({ node: l.node, imageId: l.imageId })),
      ...tmpLeft.map(tmpLeftoverKey).filter((k) => k !== undefined),
    ],
    timings,
  ).catch((error: Error) => {
    violations.push(`last round could not take every leftover key: ${error.message}`);
    return undefined;
  });
  const afterSweep = { locks: await heldLockEntries(root), tmp: await tmpLeftovers(root) };
  for (const l of afterSweep.locks) violations.push(`lock entry still there after the last round: ${l}`);
  for (const t of afterSweep.tmp) violations.push(`partial file still there after the last round: ${t}`);
  return { lockLeft, tmpLeft, sweep, afterSweep };
}

/** Every path under `dir` (relative, sorted), for "nothing was written there" comparisons. */
export async function listTree(dir: string, depth = 6): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string, level: number): Promise<void> => {
    const entries = await fsp.readdir(path.join(dir, rel), { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const child = rel ? `${rel}/${e.name}` : e.name;
      out.push(child);
      if (e.isDirectory() && level < depth) await walk(child, level + 1);
    }
  };
  await walk('', 1);
  return out.sort();
}
