import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/**
 * An operator's `rm -r` of a lock key folder while claimants keep creating entries in it. `rm` retries
 * ENOTEMPTY; on GlusterFS it can lose that race every time (50 retries seen to fail), so the operator's
 * fallback is taken: rename the folder aside (one atomic step, after which claimants see it gone, like
 * after a finished `rm -r`) into `asideRoot` (an existing folder of the same file system, outside the
 * cell), and remove it there.
 */
export async function removeKeyFolderByHand(
  keyDir: string,
  asideRoot: string,
): Promise<'rm' | 'renamed-aside'> {
  try {
    await fsp.rm(keyDir, { recursive: true, force: true, maxRetries: 50, retryDelay: 5 });
    return 'rm';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw error;
  }
  const aside = path.join(asideRoot, `removed-by-hand-${randomBytes(4).toString('hex')}`);
  await fsp.rename(keyDir, aside);
  await fsp.rm(aside, { recursive: true, force: true, maxRetries: 50, retryDelay: 5 });
  return 'renamed-aside';
}
