import type { IndexSetView } from './fanout-view';

/** A set of small non-negative integers: add, remove and membership in O(1), iteration by position. */
export class IndexSet implements IndexSetView {
  private readonly items: Int32Array;
  private readonly position: Int32Array;
  private count = 0;

  constructor(capacity: number) {
    this.items = new Int32Array(capacity);
    this.position = new Int32Array(capacity).fill(-1);
  }

  get size(): number {
    return this.count;
  }

  at(i: number): number {
    return this.items[i]!;
  }

  has(value: number): boolean {
    return this.position[value]! >= 0;
  }

  /** Adds or removes `value` so that membership equals `member`. */
  set(value: number, member: boolean): void {
    const at = this.position[value]!;
    if (member && at < 0) {
      this.items[this.count] = value;
      this.position[value] = this.count++;
    } else if (!member && at >= 0) {
      const last = this.items[--this.count]!;
      this.items[at] = last;
      this.position[last] = at;
      this.position[value] = -1;
    }
  }
}
