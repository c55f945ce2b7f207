import type { LockFileSystem } from './lock-file-system';
import type { LockKey, LockMode } from './lock-key';
import type { LockTimings } from './lock-timings';
import type { StalenessObserver } from './staleness-observer';

export interface LockRequest extends LockKey {
  mode: LockMode;
}

export interface AcquireOptions {
  /** Identifies this attempt in lock entries; a fresh one is made when omitted. */
  attemptId?: string;
  /** The whole wait, for one lock or for all of them together. */
  timeoutMs: number;
  signal?: AbortSignal;
  /**
   * Watching the caller has already done, of at least the stale time (the leftover sweep's): a gate or
   * reader entry it saw frozen for LOCK_STALE_MS is taken over or drained at once, instead of after
   * another LOCK_STALE_MS of this acquisition's own watching. Still this process's monotonic clock, and
   * still the entry's identity and mtime: the protocol's rule is unchanged (docs/locking.md).
   */
  observer?: StalenessObserver;
}

export type LockEvent =
  | { type: 'acquired'; key: LockKey; mode: LockMode; waitedMs: number; tookOverStale: boolean }
  | { type: 'released'; key: LockKey; mode: LockMode; heldMs: number }
  | { type: 'lost'; key: LockKey; mode: LockMode; reason: string }
  | { type: 'timed-out'; key: LockKey; mode: LockMode; waitedMs: number }
  | { type: 'stale-reader-removed'; key: LockKey; entry: string }
  | { type: 'garbage-failed'; key: LockKey; error: string };

export interface NodeLockManagerOptions {
  /** CACHE_ROOT: locks live in <root>/<node>/locks/<imageId>/. */
  root: string;
  conductorId: string;
  timings?: Partial<LockTimings>;
  onEvent?: (event: LockEvent) => void;
  /** The file-system calls that decide ownership (tests inject delays here); node's fs by default. */
  fs?: LockFileSystem;
  /**
   * Refuse (retryable LOCK_LOST) to lock a key whose node folder `<root>/<node>` does not exist, rather
   * than create it: a dead network mount leaves an empty local mount point, and a lock made there is seen
   * by no other host (the across-hosts campaign found two holders of one key that way). The conductor and
   * `icc cache clean` set it; off, the node folder is created (tests and benchmarks on bare folders).
   */
  requireNodeFolder?: boolean;
  /**
   * fsync each step of a claim and a release (lock-file-system.ts, syncFolder), so that other clients of
   * a network file system see it at once. Default: where the root is not on a local file system, asked
   * again at most once a minute (a mount can come and go under a running conductor).
   */
  syncSteps?: boolean;
  /**
   * How many readers of a key one claim of its gate admits: the head and the shared waiters queued behind
   * it in this process (reader-batch.ts; default MAX_READER_BATCH). 1: one claim per reader, as before
   * 1.1.0 (bench/reader-admission.ts measures against it).
   */
  readerBatch?: number;
}
