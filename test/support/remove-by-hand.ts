import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { isGone, stepsNeedSync } from '@app/locking';

/**
 * An operator's `rm -r` of a lock key folder while claimants keep creating entries in it. `rm` retries
 * ENOTEMPTY; on GlusterFS it can lose that race every time (50 retries seen to fail), so the operator's
 * fallback is taken: rename the folder aside (one atomic step, after which claimants see it gone, like
 * after a finished `rm -r`) into `asideRoot` (an existing folder of the same file system, outside the
 * cell), and remove it there.
 *
 * Each removal is fsynced before the next, as the lock protocol's own removals are (removeTree in
 * libs/locking/src/lock-file-system.ts): a plain `rm -r` on CephFS waits at the MDS for its 5 s tick at
 * every entry after the first, and holds up every look into the folder meanwhile (docs/deployment.md,
 * "CephFS"). That is only slower, not less safe: these tests strike at hand-overs, and a removal that
 * takes 20 s would strike at none. Not on a local folder (stepsNeedSync), where it is a plain rm -r.
 */
export async function removeKeyFolderByHand(
  keyDir: string,
  asideRoot: string,
): Promise<'rm' | 'renamed-aside'> {
  // A local folder: a plain rm -r, as before (its fsyncs would only stretch the removal).
  const remove = (await stepsNeedSync(keyDir))
    ? removeSynced
    : (dir: string) => fsp.rm(dir, { recursive: true, force: true, maxRetries: 50, retryDelay: 5 });
  try {
    await remove(keyDir);
    return 'rm';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOTEMPTY') throw error;
  }
  const aside = path.join(asideRoot, `removed-by-hand-${randomBytes(4).toString('hex')}`);
  await fsp.rename(keyDir, aside);
  await syncFolder(path.dirname(keyDir));
  await remove(aside);
  return 'renamed-aside';
}

/** `rm -r` with each removal fsynced (see above), 50 tries at a folder that claimants keep filling. */
async function removeSynced(target: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await removeTree(target);
      await syncFolder(path.dirname(target));
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOTEMPTY' || attempt >= 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

async function removeTree(target: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(target);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (isGone(error)) return; // ESTALE: an entry a claimant removed meanwhile (its garbage)
    if (code === 'ENOTDIR') return fsp.rm(target, { force: true });
    throw error;
  }
  const folder = await fsp.open(target, 'r').catch((error: NodeJS.ErrnoException) => {
    if (isGone(error)) return undefined; // a claimant removed it meanwhile
    throw error;
  });
  if (!folder) return;
  try {
    for (const name of names) {
      await removeTree(path.join(target, name));
      await folder.sync().catch(() => undefined); // visibility only: the removal stands either way
    }
  } finally {
    await folder.close();
  }
  await fsp.rmdir(target).catch((error: NodeJS.ErrnoException) => {
    if (!isGone(error)) throw error;
  });
}

async function syncFolder(dir: string): Promise<void> {
  const folder = await fsp.open(dir, 'r').catch(() => undefined);
  await folder?.sync().catch(() => undefined);
  await folder?.close();
}
