/** NODE_READ_LIMIT and the slots taken now, per source node (nodes without reads are left out). */
export interface ReadSlotsView {
  limitPerNode: number;
  inUse: Record<string, number>;
}

/**
 * Per-node read slots of this conductor (NODE_READ_LIMIT): how many copies read from one source node at
 * once. Per conductor, not cell-wide: N conductors may read N times the limit from one node.
 */
export class ReadSlots {
  private readonly used = new Map<string, number>();
  private readonly listeners = new Set<(node: string) => void>();

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError('read limit must be a whole number >= 1');
  }

  inUse(node: string): number {
    return this.used.get(node) ?? 0;
  }

  hasFree(node: string): boolean {
    return this.inUse(node) < this.limit;
  }

  /** Takes a slot on `node` if one is free; the returned function gives it back (once). */
  tryTake(node: string): (() => void) | undefined {
    if (!this.hasFree(node)) return undefined;
    this.used.set(node, this.inUse(node) + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = this.inUse(node) - 1;
      if (left > 0) this.used.set(node, left);
      else this.used.delete(node);
      for (const listener of this.listeners) listener(node);
    };
  }

  /** For GET /status. */
  view(): ReadSlotsView {
    return {
      limitPerNode: this.limit,
      inUse: Object.fromEntries([...this.used].sort(([a], [b]) => a.localeCompare(b))),
    };
  }

  /** Called whenever a slot is given back, with its node. */
  onRelease(listener: (node: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
