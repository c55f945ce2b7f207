import { performance } from 'node:perf_hooks';
import { ReasonError } from '@app/contracts';
import type { CacheEntries } from '@app/image-store';

export interface HolderIndexOptions {
  /** A lookup older than this starts a background rescan (the answer in hand is used meanwhile). */
  ttlMs: number;
  /**
   * An image found nowhere waits for a rescan that started after the miss; such scans start at most once
   * per this interval (misses in between wait for the next one and share it).
   */
  missRescanMs: number;
  /**
   * Whether CACHE_ROOT is the cell's folder, read when called (undefined: it is; else the problem): a dead
   * network mount shows an empty folder, where every node would seem to hold nothing.
   */
  rootCheck?: () => Promise<string | undefined>;
  onScanError?: (error: unknown) => void;
  /** Monotonic milliseconds (a spec's clock); performance.now by default. */
  now?: () => number;
  /** Waits `ms` (a spec's clock); setTimeout by default. */
  sleep?: (ms: number) => Promise<void>;
}

export const DEFAULT_HOLDER_INDEX_OPTIONS: HolderIndexOptions = { ttlMs: 5_000, missRescanMs: 1_000 };

/**
 * What the index reads of CACHE_ROOT; each call is one file-system call (a stat or a readdir), so a spec
 * counts a rescan's cost through it.
 */
export type HolderIndexStore = Pick<
  CacheEntries,
  'listNodes' | 'listImageIds' | 'rootStamp' | 'imagesFolderStamp'
>;

const NOBODY: ReadonlySet<string> = new Set();
/**
 * Node folders looked at at once during a scan someone waits for (the first lookup, a miss, `refresh()`):
 * over a network file system each call is a round trip.
 */
export const SCAN_CONCURRENCY = 16;
/**
 * Node folders looked at at once during a scan nobody waits for (the warm-up at start, the refresh after
 * the TTL). Node's file-system calls share one thread pool of 4 threads (libuv): 16 stats in flight put
 * every file-system call of a request (locks, copy, meta) behind a queue of the scan's, which is what
 * request latency at thousands of nodes was made of. Two leave the pool's other threads to requests; a
 * scan someone starts waiting for is raised to SCAN_CONCURRENCY (`hurryScan`).
 */
export const BACKGROUND_SCAN_CONCURRENCY = 2;
/**
 * A listing stays final only when made this long after its folder's signature was first seen. Mtimes may
 * be whole seconds (sshfs) or coarse (a kernel's tick): an entry added within the same second as the
 * change that set the signature leaves the signature as it was, but such a change happens within a second
 * of that change, so before a listing made a second or more after the signature was seen (our monotonic
 * clock, never the file server's: clocks of hosts may differ). Until then each rescan lists again.
 */
export const SETTLE_MS = 2_000;

/** What the index knows of one folder's listing. */
export interface FolderListing {
  /** The signature read just before the listing (undefined: the folder was missing). */
  stamp: string | undefined;
  /** When this signature was first seen (monotonic ms). */
  seenSinceMono: number;
  /** The listing was made SETTLE_MS or more after that: unchanged signature, unchanged entries. */
  settled: boolean;
}

/** Whether a folder whose signature is now `stamp` must be listed again. */
export function mustRelist(known: FolderListing | undefined, stamp: string | undefined): boolean {
  return known === undefined || known.stamp !== stamp || !known.settled;
}

/** The record of a listing made at `listedMono`, of a folder whose signature `stamp` was read at `seenMono`. */
export function listingOf(
  known: FolderListing | undefined,
  stamp: string | undefined,
  seenMono: number,
  listedMono: number,
): FolderListing {
  const seenSinceMono = known !== undefined && known.stamp === stamp ? known.seenSinceMono : seenMono;
  // A missing folder has no entries to miss: its creation changes the signature.
  const settled = stamp === undefined || listedMono - seenSinceMono >= SETTLE_MS;
  return { stamp, seenSinceMono, settled };
}

/** The index as GET /status shows it. */
export interface HolderIndexView {
  scans: number;
  /**
   * The last scan: the nodes, its time, its file-system calls (one stat per node and of CACHE_ROOT, plus a
   * listing of each folder that changed) and the folders it listed.
   */
  lastScan: { nodes: number; durationMs: number; endedAt: string; fsOps: number; listed: number } | null;
}

/**
 * Which nodes hold which image, so that choosing a source costs the same whatever the number of nodes.
 * A scan costs what changed: it stats CACHE_ROOT and every node's `images/` folder and lists only the
 * folders whose signature changed (folder-stamp in libs/image-store), or that were listed too soon after
 * it changed to be final (SETTLE_MS). Refreshed lazily once older than `ttlMs` (stale-while-revalidate: at
 * most one scan runs at a time, lookups never wait for a refresh they do not need), and updated at once
 * when this conductor publishes a copy (`learn`) or finds an entry wrong (`forget`). Entries are hints: the
 * selector verifies a node's copy before it reads from it.
 */
export class ImageHolderIndex {
  private readonly holders = new Map<string, Set<string>>();
  /** Per node: what its `images/` folder listed, and under which signature. */
  private readonly folders = new Map<string, { listing?: FolderListing; ids: Set<string> }>();
  private root: { listing: FolderListing; nodes: string[] } | undefined;
  private scannedAtMono: number | undefined;
  private scanStartedMono = 0;
  /** When the last scan for a miss started (they are spaced by missRescanMs). */
  private missScanStartedMono: number | undefined;
  /** The last scan that ended: when it started, and CACHE_ROOT's problem when it did (rootCheck). */
  private lastEnded: { startedMono: number; rootProblem?: string } | undefined;
  private scanning: Promise<void> | undefined;
  /** Raises the running scan to SCAN_CONCURRENCY (someone waits for it). */
  private hurryScan: (() => void) | undefined;
  /** What changed while a scan was running, replayed onto its result (the scan may have listed before). */
  private changesDuringScan: Array<{ node: string; imageId: string; held: boolean }> = [];
  private readonly listeners = new Set<() => void>();
  private lastScan: HolderIndexView['lastScan'] = null;
  private readonly stopping = new AbortController();
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  scans = 0;

  constructor(
    private readonly store: HolderIndexStore,
    private readonly options: HolderIndexOptions = DEFAULT_HOLDER_INDEX_OPTIONS,
  ) {
    this.now = options.now ?? (() => performance.now());
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /**
   * Builds the index in the background at start, so the first request does not wait for it, and lists
   * once more after SETTLE_MS, so the listings are final and later rescans only stat.
   */
  start(): void {
    const settle = () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, SETTLE_MS);
        timer.unref();
        this.stopping.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), {
          once: true,
        });
      });
    void (async () => {
      await this.scanOnce(BACKGROUND_SCAN_CONCURRENCY);
      await settle();
      if (!this.stopping.signal.aborted) await this.scanOnce(BACKGROUND_SCAN_CONCURRENCY);
    })().catch((error: unknown) => this.options.onScanError?.(error));
  }

  /** No new warm-up scan; a scan running only reads and ends by itself. */
  stop(): Promise<void> {
    this.stopping.abort();
    return Promise.resolve();
  }

  /** The nodes believed to hold `imageId`. The first call waits for a scan; later ones never do. */
  async holdersOf(imageId: string): Promise<ReadonlySet<string>> {
    if (this.scannedAtMono === undefined) await this.refresh();
    else if (this.now() - this.scannedAtMono > this.options.ttlMs) this.refreshInBackground();
    return this.holders.get(imageId) ?? NOBODY;
  }

  /**
   * After a lookup found no usable holder: the answer of a scan that started after the miss (one that
   * started before may have listed the node before the image came, or before this conductor's forget of a
   * holder that failed a look). Scans for misses start at most once per missRescanMs: a miss sooner waits
   * for the next one, which every miss waiting meanwhile shares. CACHE_UNAVAILABLE (retryable) when that
   * scan could not confirm CACHE_ROOT as the cell's folder (rootCheck): its "nobody" proves nothing.
   */
  async holdersAfterMiss(imageId: string): Promise<ReadonlySet<string>> {
    const missedMono = this.now();
    for (;;) {
      const ended = this.lastEnded;
      if (ended && ended.startedMono >= missedMono) {
        if (ended.rootProblem !== undefined)
          throw unprovenMiss(`no holder of ${imageId} found`, ended.rootProblem);
        return this.holders.get(imageId) ?? NOBODY;
      }
      if (this.scanning) {
        // One that started after the miss answers it; an earlier one is waited out. Either is raised
        // (someone waits for it).
        const joined = this.refresh();
        await (this.scanStartedMono >= missedMono ? joined : joined.catch(() => undefined));
        continue;
      }
      const last = this.missScanStartedMono;
      const waitMs = last === undefined ? 0 : last + this.options.missRescanMs - this.now();
      if (waitMs > 0) {
        await this.sleep(waitMs);
        continue;
      }
      this.missScanStartedMono = this.now();
      await this.refresh();
    }
  }

  /**
   * Before a final "nobody holds it": CACHE_UNAVAILABLE unless CACHE_ROOT is the cell's folder now (read
   * after the call, so after the looks that found nothing). `seen` says what was found (for the detail).
   */
  async confirmRoot(seen: string): Promise<void> {
    const problem = await this.options.rootCheck?.();
    if (problem !== undefined) throw unprovenMiss(seen, problem);
  }

  view(): HolderIndexView {
    return { scans: this.scans, lastScan: this.lastScan && { ...this.lastScan } };
  }

  /** `node` now holds a verified copy (this conductor published it, or saw it): usable at once. */
  learn(node: string, imageId: string): void {
    this.set(node, imageId, true);
    for (const listener of this.listeners) listener();
  }

  /**
   * `node` turned out not to hold a verified copy (evicted, removed, or its folder unreadable for a
   * moment): left out at once, and its folder listed again by the next scan, whatever its signature (a
   * look that failed on a dead mount is no proof, and the mount made again shows the same signature).
   */
  forget(node: string, imageId: string): void {
    this.set(node, imageId, false);
  }

  /** Called after every `learn` (source selection wakes copies waiting for a read slot). */
  onLearn(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Rescans now (one scan at a time: a caller during a scan waits for that one, raised to
   * SCAN_CONCURRENCY since someone now waits for it).
   */
  refresh(): Promise<void> {
    const scanning = this.scanOnce(SCAN_CONCURRENCY);
    this.hurryScan?.();
    return scanning;
  }

  private refreshInBackground(): void {
    if (this.scanning) return;
    this.scanOnce(BACKGROUND_SCAN_CONCURRENCY).catch((error: unknown) => this.options.onScanError?.(error));
  }

  /** The running scan, or a new one looking at `concurrency` node folders at once. */
  private scanOnce(concurrency: number): Promise<void> {
    this.scanning ??= this.scan(concurrency).finally(() => {
      this.scanning = undefined;
      this.hurryScan = undefined;
    });
    return this.scanning;
  }

  private set(node: string, imageId: string, held: boolean): void {
    if (this.scanning) this.changesDuringScan.push({ node, imageId, held });
    this.apply(node, imageId, held);
  }

  private apply(node: string, imageId: string, held: boolean): void {
    let folder = this.folders.get(node);
    if (!folder) {
      // Not listed yet: the next scan lists it (no signature known).
      folder = { ids: new Set() };
      this.folders.set(node, folder);
    }
    if (held) folder.ids.add(imageId);
    else {
      folder.ids.delete(imageId);
      if (folder.listing) folder.listing = { ...folder.listing, settled: false };
    }
    this.setHolder(node, imageId, held);
  }

  private setHolder(node: string, imageId: string, held: boolean): void {
    const nodes = this.holders.get(imageId);
    if (held) {
      if (nodes) nodes.add(node);
      else this.holders.set(imageId, new Set([node]));
    } else if (nodes) {
      nodes.delete(node);
      if (nodes.size === 0) this.holders.delete(imageId);
    }
  }

  /** Replaces what `node` holds by `ids` (a new listing; empty when the node is gone). */
  private replaceNode(node: string, ids: Set<string>, listing: FolderListing | undefined): void {
    const before = this.folders.get(node)?.ids ?? new Set<string>();
    for (const id of before) if (!ids.has(id)) this.setHolder(node, id, false);
    for (const id of ids) if (!before.has(id)) this.setHolder(node, id, true);
    if (listing) this.folders.set(node, { listing, ids });
    else this.folders.delete(node);
  }

  private async scan(concurrency: number): Promise<void> {
    const started = this.now();
    this.scanStartedMono = started;
    this.changesDuringScan = [];
    // Before any listing: an empty folder where the cell should be (a dead mount) would list as "nobody".
    const rootProblem = await this.options.rootCheck?.();
    const cost = { fsOps: 0, listed: 0 };
    const lookers: Array<Promise<void>> = [];
    let target = concurrency;
    let looking = false;
    const addLookers = () => {
      while (looking && lookers.length < target) lookers.push(looker());
    };
    this.hurryScan = () => {
      target = Math.max(target, SCAN_CONCURRENCY);
      addLookers();
    };
    const nodeIds = await this.nodes(cost);
    const relisted = new Map<string, { listing: FolderListing; ids: Set<string> }>();
    let next = 0;
    const looker = async () => {
      for (let node = nodeIds[next++]; node !== undefined; node = nodeIds[next++]) {
        const seenMono = this.now();
        const stamp = await this.store.imagesFolderStamp(node);
        cost.fsOps += 1;
        const known = this.folders.get(node)?.listing;
        if (!mustRelist(known, stamp)) continue;
        const listedMono = this.now();
        let ids: string[] = [];
        if (stamp !== undefined) {
          ids = await this.store.listImageIds(node);
          cost.fsOps += 1;
          cost.listed += 1;
        }
        relisted.set(node, { listing: listingOf(known, stamp, seenMono, listedMono), ids: new Set(ids) });
      }
    };
    looking = true;
    addLookers();
    // Lookers added while these run (hurryScan) share the queue; wait for them too.
    for (let waited = 0; waited < lookers.length;) {
      waited = lookers.length;
      await Promise.all(lookers.slice(0, waited));
    }
    looking = false;
    const present = new Set(nodeIds);
    for (const node of [...this.folders.keys()])
      if (!present.has(node)) this.replaceNode(node, new Set(), undefined);
    for (const [node, { listing, ids }] of relisted) this.replaceNode(node, ids, listing);
    const replay = this.changesDuringScan;
    this.changesDuringScan = [];
    for (const change of replay) this.apply(change.node, change.imageId, change.held);
    this.scans += 1;
    this.lastEnded = { startedMono: started, ...(rootProblem !== undefined ? { rootProblem } : {}) };
    this.scannedAtMono = this.now();
    this.lastScan = {
      nodes: nodeIds.length,
      durationMs: Math.round(this.scannedAtMono - started),
      endedAt: new Date().toISOString(),
      ...cost,
    };
  }

  /** The node folders under CACHE_ROOT: listed again only when its signature changed (or is too new). */
  private async nodes(cost: { fsOps: number; listed: number }): Promise<string[]> {
    const seenMono = this.now();
    const stamp = await this.store.rootStamp();
    cost.fsOps += 1;
    if (this.root && !mustRelist(this.root.listing, stamp)) return this.root.nodes;
    const listedMono = this.now();
    let nodes: string[] = [];
    if (stamp !== undefined) {
      nodes = await this.store.listNodes();
      cost.fsOps += 1;
      cost.listed += 1;
    }
    this.root = { listing: listingOf(this.root?.listing, stamp, seenMono, listedMono), nodes };
    return nodes;
  }
}

/** A miss that proves nothing: CACHE_ROOT was not (or could not be confirmed as) the cell's folder. */
function unprovenMiss(seen: string, problem: string): ReasonError {
  return new ReasonError(
    'CACHE_UNAVAILABLE',
    `${seen}, but CACHE_ROOT could not be confirmed as the cell's folder (${problem}): nothing is judged absent`,
  );
}
