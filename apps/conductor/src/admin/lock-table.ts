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

/** GET /locks: the lock folders of this cell's nodes under CACHE_ROOT, read-only. */
export class LockTable {
  constructor(private readonly options: { cacheRoot: string; staleMs: number; conductorId: string }) {}

  /** Throws InvalidQueryError for a bad query. */
  async list(query: unknown): Promise<LocksResponse> {
    const { node, image } = parseLocksQuery(query);
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
}
