import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';

/** Makes a rename or unlink in `dir` survive a crash: without it the new name may vanish on power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** mkdir -p that reports a file sitting where the folder belongs as ENOTDIR (mkdir says EEXIST). */
export async function ensureDir(dir: string): Promise<void> {
  try {
    await fsp.mkdir(dir, { recursive: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${dir}'`), {
      code: 'ENOTDIR',
      path: dir,
      cause: error,
    });
  }
}

/**
 * Writes `data` to `finalPath` so readers see the old content or the new, never a torn file: a fresh file
 * in `tmpDir` (same file system), fsync, rename, fsync of the final folder.
 */
export async function writeFileAtomic(options: {
  tmpPath: string;
  finalPath: string;
  finalDir: string;
  data: string;
  fsync: boolean;
  /** Removes the tmp file after a failure without throwing (the original error is the one to report). */
  discard: (tmpPath: string) => Promise<void>;
}): Promise<void> {
  const { tmpPath, finalPath, finalDir, data, fsync, discard } = options;
  let renamed = false;
  try {
    const handle = await fsp.open(tmpPath, 'wx', 0o644);
    try {
      await handle.writeFile(data, 'utf8');
      if (fsync) await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(tmpPath, finalPath);
    renamed = true;
    if (fsync) await fsyncDir(finalDir);
  } catch (error) {
    if (!renamed) await discard(tmpPath);
    throw error;
  }
}

export function uniqueTag(prefix: string): string {
  return `${prefix}-${randomUUID()}`;
}
