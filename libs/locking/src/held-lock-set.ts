import type { HeldLock } from './held-lock';

/** A set of locks taken together (in the global key order); lost as soon as any one is lost. */
export class HeldLockSet {
  readonly signal: AbortSignal;

  constructor(readonly locks: HeldLock[]) {
    this.signal = AbortSignal.any(locks.map((l) => l.signal));
  }

  async assertStillHeld(): Promise<void> {
    for (const lock of this.locks) await lock.assertStillHeld();
  }

  async release(): Promise<void> {
    // Reverse order; every lock is given back even if one release fails.
    const results = await Promise.allSettled([...this.locks].reverse().map((l) => l.release()));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
