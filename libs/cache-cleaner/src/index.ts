export { CacheCleaner } from './cache-cleaner';
export type { CleanOptions, CleanerLogger } from './cache-cleaner';
export {
  DAY_MS,
  DEFAULT_CLEANER_POLICY,
  HOUR_MS,
  MINUTE_MS,
  TMP_SWEEP_AGE_MS,
  resolveCleanerPolicy,
} from './cleaner-policy';
export type { CleanerPolicy } from './cleaner-policy';
export { summarizeCleanReport } from './clean-report';
export type { CleanReport, DeletedImageReport, DeletionReason } from './clean-report';
export { ImagePurger } from './image-purger';
export type { PurgeOptions, PurgeOutcome } from './image-purger';
