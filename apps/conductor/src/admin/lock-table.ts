import { type LockEntryView, LOCK_INSPECTION_NOTE, inspectLocks } from '@app/locking';
import { parseLocksQuery } from './locks-query';

export interface LocksResponse {
  entries: (LockEntryView & { heldHere: boolean })[];
  truncated: number;
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
  now?: () => number;
}

/** GET /locks: the lock folders of this cell's nodes under CACHE_ROOT, read-only. */
export class LockTable {
  private readonly recent = new Map<string, { at: number; answer: Promise<LocksResponse> }>();

  constructor(private readonly options: LockTableOptions) {}

  /** Throws InvalidQueryError for a bad query. */
  list(query: unknown): Promise<LocksResponse> {
    const { node, image } = parseLocksQuery(query);
    const key = `${node ?? ''}/${image ?? ''}`;
    const now = this.now();
    const cached = this.recent.get(key);
    if (cached && now - cached.at < (this.options.cacheMs ?? 500)) return cached.answer;
    for (const [k, v] of this.recent) if (now - v.at >= (this.options.cacheMs ?? 500)) this.recent.delete(k);
    const answer = this.inspect(node, image);
    this.recent.set(key, { at: now, answer });
    // A failed scan is not kept: the next request tries again.
    answer.catch(() => this.recent.get(key)?.answer === answer && this.recent.delete(key));
    return answer;
  }

  private async inspect(node: string | undefined, image: string | undefined): Promise<LocksResponse> {
    const inspection = await inspectLocks(this.options.cacheRoot, {
      node,
      imageId: image,
      staleMs: this.options.staleMs,
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
