import { performance } from 'node:perf_hooks';
import type { CacheEntries } from '@app/image-store';

export interface HolderIndexOptions {
  /** A lookup older than this starts a background rescan (the answer in hand is used meanwhile). */
  ttlMs: number;
  /** An image found nowhere triggers a rescan that is awaited, at most once per this interval. */
  missRescanMs: number;
  onScanError?: (error: unknown) => void;
}

export const DEFAULT_HOLDER_INDEX_OPTIONS: HolderIndexOptions = { ttlMs: 5_000, missRescanMs: 1_000 };

const NOBODY: ReadonlySet<string> = new Set();
/** Node folders listed at once during a scan: over a network file system each listing is a round trip. */
const SCAN_CONCURRENCY = 16;

/** The index as GET /status shows it. */
export interface HolderIndexView {
  scans: number;
  /** Nodes and the time of the last scan (one listing of each node's images folder). */
  lastScan: { nodes: number; durationMs: number; endedAt: string } | null;
}

/**
 * Which nodes hold which image, so that choosing a source costs the same whatever the number of nodes.
 * Built by a scan (one readdir of each node's images folder), refreshed lazily once older than `ttlMs`
 * (stale-while-revalidate: at most one scan runs at a time, lookups never wait for a refresh they do not
 * need), and updated at once when this conductor publishes a copy (`learn`) or finds an entry wrong
 * (`forget`). Entries are hints: the selector verifies a node's copy before it reads from it.
 */
export class ImageHolderIndex {
  private holders = new Map<string, Set<string>>();
  private scannedAtMono: number | undefined;
  private scanning: Promise<void> | undefined;
  /** What changed while a scan was running, replayed onto its result (the scan may have listed before). */
  private changesDuringScan: Array<{ node: string; imageId: string; held: boolean }> = [];
  private readonly listeners = new Set<() => void>();
  private lastScan: HolderIndexView['lastScan'] = null;
  scans = 0;

  constructor(
    private readonly store: Pick<CacheEntries, 'listNodes' | 'listImageIds'>,
    private readonly options: HolderIndexOptions = DEFAULT_HOLDER_INDEX_OPTIONS,
  ) {}

  /** The nodes believed to hold `imageId`. The first call waits for a scan; later ones never do. */
  async holdersOf(imageId: string): Promise<ReadonlySet<string>> {
    if (this.scannedAtMono === undefined) await this.refresh();
    else if (performance.now() - this.scannedAtMono > this.options.ttlMs) this.refreshInBackground();
    return this.holders.get(imageId) ?? NOBODY;
  }

  /** After a lookup found no usable holder: rescan (awaited, at most once per missRescanMs), then answer. */
  async holdersAfterMiss(imageId: string): Promise<ReadonlySet<string>> {
    if (
      this.scannedAtMono === undefined ||
      performance.now() - this.scannedAtMono >= this.options.missRescanMs
    )
      await this.refresh();
    return this.holders.get(imageId) ?? NOBODY;
  }

  view(): HolderIndexView {
    return { scans: this.scans, lastScan: this.lastScan && { ...this.lastScan } };
  }

  /** `node` now holds a verified copy (this conductor published it, or saw it): usable at once. */
  learn(node: string, imageId: string): void {
    this.set(node, imageId, true);
    for (const listener of this.listeners) listener();
  }

  /** `node` turned out not to hold a verified copy (evicted, removed). */
  forget(node: string, imageId: string): void {
    this.set(node, imageId, false);
  }

  /** Called after every `learn` (source selection wakes copies waiting for a read slot). */
  onLearn(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Rescans now (one scan at a time: a caller during a scan waits for that one). */
  refresh(): Promise<void> {
    this.scanning ??= this.scan().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  private refreshInBackground(): void {
    if (this.scanning) return;
    this.refresh().catch((error: unknown) => this.options.onScanError?.(error));
  }

  private set(node: string, imageId: string, held: boolean): void {
    if (this.scanning) this.changesDuringScan.push({ node, imageId, held });
    const nodes = this.holders.get(imageId);
    if (held) {
      if (nodes) nodes.add(node);
      else this.holders.set(imageId, new Set([node]));
    } else if (nodes) {
      nodes.delete(node);
      if (nodes.size === 0) this.holders.delete(imageId);
    }
  }

  private async scan(): Promise<void> {
    const started = performance.now();
    this.changesDuringScan = [];
    const found = new Map<string, Set<string>>();
    const nodeIds = await this.store.listNodes();
    const queue = [...nodeIds];
    const lister = async () => {
      for (let node = queue.shift(); node !== undefined; node = queue.shift()) {
        for (const imageId of await this.store.listImageIds(node)) {
          const nodes = found.get(imageId);
          if (nodes) nodes.add(node);
          else found.set(imageId, new Set([node]));
        }
      }
    };
    await Promise.all(Array.from({ length: SCAN_CONCURRENCY }, lister));
    const replay = this.changesDuringScan;
    this.changesDuringScan = [];
    this.holders = found;
    for (const change of replay) {
      const nodes = found.get(change.imageId);
      if (change.held) {
        if (nodes) nodes.add(change.node);
        else found.set(change.imageId, new Set([change.node]));
      } else nodes?.delete(change.node);
    }
    this.scans += 1;
    this.scannedAtMono = performance.now();
    this.lastScan = {
      nodes: nodeIds.length,
      durationMs: Math.round(this.scannedAtMono - started),
      endedAt: new Date().toISOString(),
    };
  }
}
