import { isReasonError } from '@app/contracts';
import type { ImageStore } from '@app/image-store';
import { type HeldLock, type NodeLockManager, newAttemptId } from '@app/locking';
import type { CleanerLogger } from './cache-cleaner';

export type PurgeOutcome =
  | { outcome: 'deleted'; bytes: number; unpinned: boolean; fencingToken: number }
  | { outcome: 'absent' }
  | { outcome: 'pinned' }
  | { outcome: 'busy'; detail: string };

export interface PurgeOptions {
  /** Delete a pinned copy too, removing its pin. */
  forceUnpin?: boolean;
  /** How long to wait for copies reading or writing the image to finish, then `busy`. */
  waitMs: number;
  signal?: AbortSignal;
}

/**
 * Retires one image from one node on an operator's request, by the cache cleaner's rule: only under the
 * image's EXCLUSIVE lock, with the pin checked under that lock, `assertStillHeld()` right before the
 * delete, and the delete itself in the order that leaves no half state a copy could trust (meta first).
 * Unlike the cleaner it waits for readers (a writer waiting keeps the gate, so new readers queue behind
 * it), up to `waitMs`; a copy still reading then makes the node `busy`, and nothing is deleted.
 */
export class ImagePurger {
  constructor(
    private readonly store: ImageStore,
    private readonly locks: NodeLockManager,
    private readonly log: CleanerLogger,
  ) {}

  async purge(node: string, imageId: string, options: PurgeOptions): Promise<PurgeOutcome> {
    let lock: HeldLock;
    try {
      lock = await this.locks.acquire(
        { node, imageId, mode: 'exclusive' },
        { timeoutMs: options.waitMs, signal: options.signal, attemptId: `purge-${newAttemptId()}` },
      );
    } catch (error) {
      if (!options.signal?.aborted && isReasonError(error) && error.code === 'LOCK_TIMEOUT')
        return {
          outcome: 'busy',
          detail: `a copy held the image's lock for more than ${options.waitMs} ms; nothing deleted`,
        };
      throw error;
    }
    try {
      const pinned = await this.store.markers.isPinned(node, imageId);
      if (pinned && !options.forceUnpin) {
        const entry = await this.store.entries.entry(node, imageId);
        return entry.meta || entry.modifiedMs !== undefined ? { outcome: 'pinned' } : { outcome: 'absent' };
      }
      await lock.assertStillHeld(); // right before the irreversible step
      const removed = await this.store.entries.deleteImage(node, imageId);
      if (pinned) await this.store.markers.unpin(node, imageId);
      if (!removed.removedMeta && !removed.removedImage) return { outcome: 'absent' };
      this.log.info(
        { node, imageId, bytes: removed.bytes, unpinned: pinned, fencingToken: lock.fencingToken },
        'image purged',
      );
      return { outcome: 'deleted', bytes: removed.bytes, unpinned: pinned, fencingToken: lock.fencingToken };
    } finally {
      await lock
        .release()
        .catch((error: unknown) =>
          this.log.warn(
            { node, imageId, err: String(error) },
            'purge: releasing a lock failed (it goes stale)',
          ),
        );
    }
  }
}
