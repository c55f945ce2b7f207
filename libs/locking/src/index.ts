export { NodeLockManager } from './node-lock-manager';
export { HeldLockSet } from './held-lock-set';
export type { AcquireOptions, LockEvent, LockRequest, NodeLockManagerOptions } from './lock-manager-options';
export { HeldLock } from './held-lock';
export { StalenessObserver } from './staleness-observer';
export { isGone, nodeLockFileSystem, stepsNeedSync } from './lock-file-system';
export type { LockFileSystem } from './lock-file-system';
export type { LockHolder, LockKey, LockMode } from './lock-key';
export { lockKeyString, newAttemptId } from './lock-key';
export {
  DEFAULT_LOCK_TIMINGS,
  MIN_STALE_MS,
  MIN_UPDATE_MS,
  lockTimingProblems,
  resolveLockTimings,
} from './lock-timings';
export type { LockTimings } from './lock-timings';
export { LOCK_INSPECTION_NOTE, inspectLocks, lockEntryPath, readLockActivity } from './lock-inspector';
export type { InspectLocksOptions, LockActivity, LockEntryView, LockInspection } from './lock-inspector';
export { RETIRED_PREFIX, RETIRE_FLOOR_MARGIN_US, isRetiredName, removeRetired } from './key-retirement';
export type { RetireOutcome } from './key-retirement';
export { lockKeyDir, nodeLocksDir } from './lock-key';
