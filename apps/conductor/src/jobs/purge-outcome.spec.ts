import { describe, expect, it } from 'vitest';
import { ReasonError } from '@app/contracts';
import { type PurgeAttempt, type PurgeNodeSettlement, purgeNodeSettlement } from './purge-outcome';

/** What a purge records for one node, and whether CACHE_ROOT must be confirmed the cell's first. */
const TABLE: Array<[string, PurgeAttempt, PurgeNodeSettlement]> = [
  [
    'the job was cancelled before the node',
    { cancelled: true },
    {
      verdict: { outcome: 'cancelled', detail: 'the job was cancelled before this node was started' },
      cellFolderFirst: false,
    },
  ],
  [
    'deleted',
    { purged: { outcome: 'deleted', bytes: 4096, unpinned: false, fencingToken: 7 } },
    { verdict: { outcome: 'deleted', bytes: 4096 }, cellFolderFirst: false },
  ],
  [
    'deleted with its pin (forceUnpin)',
    { purged: { outcome: 'deleted', bytes: 0, unpinned: true, fencingToken: 7 } },
    {
      verdict: { outcome: 'deleted', detail: 'deleted; its pin was removed', bytes: 0 },
      cellFolderFirst: false,
    },
  ],
  [
    'busy: copies kept reading it',
    { purged: { outcome: 'busy', detail: 'in use by 2 copies after 1000 ms' } },
    { verdict: { outcome: 'busy', detail: 'in use by 2 copies after 1000 ms' }, cellFolderFirst: false },
  ],
  [
    'pinned, kept',
    { purged: { outcome: 'pinned' } },
    {
      verdict: { outcome: 'pinned', detail: 'pinned on this node: kept (use forceUnpin)' },
      cellFolderFirst: false,
    },
  ],
  [
    "absent: only once the folder is the cell's",
    { purged: { outcome: 'absent' } },
    { verdict: { outcome: 'absent', detail: 'the node did not hold the image' }, cellFolderFirst: true },
  ],
  [
    'failed with a reason',
    { failed: new ReasonError('LOCK_LOST', 'the lock was taken over') },
    {
      verdict: { outcome: 'failed', detail: 'the lock was taken over', reason: 'LOCK_LOST' },
      cellFolderFirst: true,
    },
  ],
  [
    'failed unexpectedly',
    { failed: new Error('boom') },
    { verdict: { outcome: 'failed', detail: 'boom', reason: 'INTERNAL' }, cellFolderFirst: true },
  ],
  [
    'failed with a thrown string',
    { failed: 'EIO' },
    { verdict: { outcome: 'failed', detail: 'EIO', reason: 'INTERNAL' }, cellFolderFirst: true },
  ],
];

describe('purgeNodeSettlement', () => {
  it.each(TABLE)('%s', (_name, attempt, expected) => {
    expect(purgeNodeSettlement(attempt)).toEqual(expected);
  });
});
