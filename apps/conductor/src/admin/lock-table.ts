import { type LockEntryView, LOCK_INSPECTION_NOTE, inspectLocks } from '@app/locking';
import { parseLocksQuery } from './locks-query';

export interface LocksResponse {
  entries: (LockEntryView & { heldHere: boolean })[];
  truncated: number;
  /** False: the scan ran out of time (big cell) and shows nodesScanned of nodesTotal; filter by node. */
  complete: boolean;
  nodesScanned: number;
  nodesTotal: number;
  staleMs: number;
  inspectedAt: string;
  filter: { node?: string; image?: string };
  note: string;
}

export interface LockTableOptions {
  cacheRoot: string;
  staleMs: number;
  conductorId: string;
  /**
   * Answers younger than this are reused (per filter), and concurrent requests share one scan: key
   * folders stay after release, so a scan reads one folder per image ever locked, and several open
   * status pages polling every second must not multiply that. Default 500 ms.
   */
  cacheMs?: number;
  /** A scan that has not answered after this long is answered LockScanTimeoutError (503). Default 2 s. */
  timeoutMs?: number;
  /**
   * A scan stops looking at further nodes after this long and answers what it found (`complete: false`):
   * a big cell is slow to read, not hung. Default: half of timeoutMs, so a slow scan answers in time and
   * 503 stays for a CACHE_ROOT whose calls do not return.
   */
  budgetMs?: number;
  now?: () => number;
  /** The scan (inspectLocks by default; a spec brings one that hangs). */
  inspect?: typeof inspectLocks;
}

/** CACHE_ROOT did not answer a scan in time (a hung network mount): GET /locks answers 503. */
export class LockScanTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`CACHE_ROOT did not answer the lock scan within ${timeoutMs} ms (a network mount not answering?)`);
    this.name = 'LockScanTimeoutError';
  }
}

/** GET /locks: the lock folders of this cell's nodes under CACHE_ROOT, read-only. */
export class LockTable {
  private readonly recent = new Map<
    string,
    { at: number; answer: Promise<LocksResponse>; pending: boolean }
  >();

  constructor(private readonly options: LockTableOptions) {}

  /** Throws InvalidQueryError for a bad query. */
  list(query: unknown): Promise<LocksResponse> {
    const { node, image } = parseLocksQuery(query);
    const key = `${node ?? ''}/${image ?? ''}`;
    const now = this.now();
    const cached = this.recent.get(key);
    // A scan still running is shared however old: a second one behind a hung mount would only hold
    // another of the few file-system threads.
    if (cached && (cached.pending || now - cached.at < (this.options.cacheMs ?? 500)))
      return this.bounded(cached.answer);
    for (const [k, v] of this.recent)
      if (!v.pending && now - v.at >= (this.options.cacheMs ?? 500)) this.recent.delete(k);
    const entry = { at: now, answer: this.inspect(node, image), pending: true };
    this.recent.set(key, entry);
    entry.answer.then(
      () => (entry.pending = false),
      // A failed scan is not kept: the next request tries again.
      () => this.recent.get(key) === entry && this.recent.delete(key),
    );
    return this.bounded(entry.answer);
  }

  private bounded(answer: Promise<LocksResponse>): Promise<LocksResponse> {
    const timeoutMs = this.options.timeoutMs ?? 2_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new LockScanTimeoutError(timeoutMs)), timeoutMs);
    });
    return Promise.race([answer, timeout]).finally(() => clearTimeout(timer));
  }

  private async inspect(node: string | undefined, image: string | undefined): Promise<LocksResponse> {
    const inspection = await (this.options.inspect ?? inspectLocks)(this.options.cacheRoot, {
      node,
      imageId: image,
      staleMs: this.options.staleMs,
      budgetMs: this.options.budgetMs ?? (this.options.timeoutMs ?? 2_000) / 2,
    });
    return {
      ...inspection,
      entries: inspection.entries.map((e) => ({
        ...e,
        heldHere: e.holder?.conductorId === this.options.conductorId,
      })),
      filter: { node, image },
      note: LOCK_INSPECTION_NOTE,
    };
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }
}
