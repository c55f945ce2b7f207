import type { CleanerPolicy } from './cleaner-policy';

/**
 * Why an image was deleted: `unused` (last use older than maxUnusedMs), `over-budget` (least recently used
 * while the node held more than its budget), `orphan` (an image file or meta left without the other by an
 * interrupted publish or delete: nobody can use it).
 */
export type DeletionReason = 'unused' | 'over-budget' | 'orphan';

export interface DeletedImageReport {
  imageId: string;
  /** Bytes freed (a dry run: bytes that would be freed). */
  size: number;
  why: DeletionReason;
  lastUsedAt?: string;
  /** Wall-clock ms right after the exclusive lock was granted, and right after the delete (not in a dry run). */
  lockedAt?: number;
  deletedAt?: number;
}

export interface CleanReport {
  node: string;
  dryRun: boolean;
  startedAt: string;
  durationMs: number;
  policy: CleanerPolicy;
  /** Image ids found in the node's images folder (verified images and orphans). */
  examined: number;
  /** Deleted (a dry run: would be deleted), in the order it happened. */
  deleted: DeletedImageReport[];
  /** Candidates spared because they are pinned (`<node>/pinned/<imageId>`). */
  keptPinned: string[];
  /** Candidates skipped this run because a copy was reading or writing them (lock busy). */
  skippedBusy: string[];
  /** Candidates kept because, re-checked under the lock, they no longer qualified (used or re-published meanwhile). */
  keptChanged: string[];
  /** Per-image failures; the run went on with the next image. */
  errors: Array<{ imageId: string; error: string }>;
  /** Partial copies older than a day removed from tmp/. */
  tmpSwept: number;
  /** Files a network mount hid in images/ (`.fuse_hidden*`, `.nfs*`) removed once hidden longer than graceMs (a dry run: would be). */
  litterRemoved: string[];
  bytesBefore: number;
  bytesFreed: number;
  bytesAfter: number;
  /** With a budget: still over it at the end (pinned, busy or recently used images kept it so). */
  overBudget: boolean;
  /** The run was stopped early (shutdown). */
  aborted: boolean;
}

/** One line for logs and the CLI. */
export function summarizeCleanReport(report: CleanReport): string {
  const verb = report.dryRun ? 'would delete' : 'deleted';
  const parts = [
    `node ${report.node}: examined ${report.examined}`,
    `${verb} ${report.deleted.length} (${report.bytesFreed} bytes)`,
    `kept pinned ${report.keptPinned.length}`,
    `skipped busy ${report.skippedBusy.length}`,
  ];
  if (report.keptChanged.length > 0) parts.push(`kept (used meanwhile) ${report.keptChanged.length}`);
  if (report.litterRemoved.length > 0)
    parts.push(`${report.dryRun ? 'would remove' : 'removed'} hidden files ${report.litterRemoved.length}`);
  if (report.errors.length > 0) parts.push(`errors ${report.errors.length}`);
  parts.push(
    `bytes after ${report.bytesAfter}${report.policy.budgetBytes ? ` of ${report.policy.budgetBytes} budget${report.overBudget ? ' (still over)' : ''}` : ''}`,
  );
  if (report.aborted) parts.push('stopped early');
  return parts.join(', ');
}
