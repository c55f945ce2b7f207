/**
 * Counts the calls a background round makes through its file-system seams, so that GET /status and
 * /metrics show the load each round puts on the shared file system. One call through a seam counts one:
 * exact for the seams that are one system call each (a listing, a stat: the leftover sweep's lock folders,
 * the holder index), a lower bound for the compound ones (a store call that reads an image's meta and its
 * last-use marker, a job-record folder walk). The lock protocol's own calls for the locks a round takes
 * (the cleaner's, the sweep's retirements) are not counted. A round reads the count at its end; rounds of
 * one kind never overlap (RoundSchedule), so the count is that round's.
 */
export class RoundFsOps {
  private count = 0;

  /** `seam` with every call of one of its methods counted. */
  seam<T extends object>(seam: T): T {
    return new Proxy(seam, {
      get: (target, property) => {
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== 'function') return value;
        return (...args: unknown[]): unknown => {
          this.count += 1;
          return Reflect.apply(value, target, args);
        };
      },
    });
  }

  /**
   * `target` with the calls of the methods of its parts `names` counted (an ImageStore's `entries` and
   * `markers`), and everything else as it is.
   */
  parts<T extends object>(target: T, names: ReadonlyArray<keyof T>): T {
    const counted = new Map<PropertyKey, unknown>();
    return new Proxy(target, {
      get: (inner, property) => {
        const value: unknown = Reflect.get(inner, property, inner);
        if (!names.includes(property as keyof T) || typeof value !== 'object' || value === null) return value;
        if (!counted.has(property)) counted.set(property, this.seam(value));
        return counted.get(property);
      },
    });
  }

  /** `call` counted at each call. */
  fn<A extends unknown[], R>(call: (...args: A) => R): (...args: A) => R {
    return (...args: A) => {
      this.count += 1;
      return call(...args);
    };
  }

  /** The calls since the last take (a round takes once at its start, once at its end). */
  take(): number {
    const count = this.count;
    this.count = 0;
    return count;
  }
}
