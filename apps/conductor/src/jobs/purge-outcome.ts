import { ReasonError, errorText } from '@app/contracts';
import type { PurgeOutcome } from '@app/cache-cleaner';
import { CANCELLED_BEFORE_START, type NodeVerdict } from './job-node-outcomes';

/** What became of a purge on one node: the job was cancelled first, the purger answered, or it threw. */
export type PurgeAttempt = { cancelled: true } | { purged: PurgeOutcome } | { failed: unknown };

export interface PurgeNodeSettlement {
  verdict: NodeVerdict;
  /**
   * Recorded only once CACHE_ROOT is confirmed the cell's folder: on a dead mount's empty folder every
   * image is absent and every file call fails, and either would be a lie. The purge is then handed back
   * and resumes with the nodes left.
   */
  cellFolderFirst: boolean;
}

export function purgeNodeSettlement(attempt: PurgeAttempt): PurgeNodeSettlement {
  if ('cancelled' in attempt) return { verdict: CANCELLED_BEFORE_START, cellFolderFirst: false };
  if ('failed' in attempt) {
    const { failed } = attempt;
    return {
      verdict: {
        outcome: 'failed',
        detail: errorText(failed),
        reason: failed instanceof ReasonError ? failed.code : 'INTERNAL',
      },
      cellFolderFirst: true,
    };
  }
  const { purged } = attempt;
  switch (purged.outcome) {
    case 'deleted':
      return {
        verdict: {
          outcome: 'deleted',
          ...(purged.unpinned ? { detail: 'deleted; its pin was removed' } : {}),
          bytes: purged.bytes,
        },
        cellFolderFirst: false,
      };
    case 'busy':
      return { verdict: { outcome: 'busy', detail: purged.detail }, cellFolderFirst: false };
    case 'pinned':
      return {
        verdict: { outcome: 'pinned', detail: 'pinned on this node: kept (use forceUnpin)' },
        cellFolderFirst: false,
      };
    case 'absent':
      return {
        verdict: { outcome: 'absent', detail: 'the node did not hold the image' },
        cellFolderFirst: true,
      };
  }
}
