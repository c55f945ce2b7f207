import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ReasonError } from '@app/contracts';

/** Makes a rename or unlink in `dir` survive a crash: without it the new name may vanish on power loss. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Makes `dir`, a folder of the cell below CACHE_ROOT (`root`), and its missing parents, but never a folder
 * directly in an empty CACHE_ROOT. A network mount that is not there (it died, or was never mounted) leaves
 * an empty local folder at its path: a record made there is seen by no other host (a request's answer,
 * a job, a piece record), and it keeps a FUSE client from mounting there again ("mountpoint is not
 * empty"). A cell's CACHE_ROOT is never empty: it holds the registered nodes' folders and the header key.
 * Then it throws ENOENT, which callers take as a failed write (retried). One `mkdir` when `dir` exists.
 */
export async function makeCellFolder(root: string, dir: string): Promise<void> {
  const parent = path.dirname(dir);
  const relative = path.relative(root, dir);
  if (relative === '' || relative.startsWith('..') || path.isAbsolute(relative))
    throw new Error(`${dir} is not a folder below CACHE_ROOT ${root}`);
  if (parent === root) return makeTopFolder(root, dir);
  try {
    return await mkdirUnlessPresent(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await makeCellFolder(root, parent);
  await mkdirUnlessPresent(dir);
}

/** A folder directly in CACHE_ROOT: looked for first, made only in a CACHE_ROOT that holds anything. */
async function makeTopFolder(root: string, dir: string): Promise<void> {
  try {
    await fsp.stat(dir);
    return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (await isEmptyFolder(root))
    throw Object.assign(
      new Error(
        `ENOENT: CACHE_ROOT ${root} is empty (the cell's shared folder not mounted there?): not making ${path.basename(dir)} in it`,
      ),
      { code: 'ENOENT', path: dir },
    );
  await mkdirUnlessPresent(dir);
}

async function mkdirUnlessPresent(dir: string): Promise<void> {
  await fsp.mkdir(dir).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  });
}

/** True when `dir` has no entry at all (one entry is read, not the whole listing). */
export async function isEmptyFolder(dir: string): Promise<boolean> {
  const handle = await fsp.opendir(dir);
  try {
    return (await handle.read()) === null;
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * Creates a folder directly inside a node's folder, never the node's folder itself (no mkdir -p): a node
 * exists only once registered, so a copy to a node without a folder fails UNKNOWN_NODE instead of
 * creating one. A file sitting where the folder belongs is reported as ENOTDIR (mkdir says EEXIST).
 */
export async function ensureNodeFolder(node: { node: string; dir: string }, dir: string): Promise<void> {
  try {
    await fsp.mkdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && path.dirname(dir) === node.dir) {
      throw new ReasonError(
        'UNKNOWN_NODE',
        `node ${node.node}: its folder ${node.dir} does not exist (a node's folder is created by registering it: icc node add ${node.node})`,
        { cause: error },
      );
    }
    if (code !== 'EEXIST') throw error;
    if ((await fsp.stat(dir)).isDirectory()) return;
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

/**
 * Writes `name` in `dir` unless it exists, first writer wins: a complete file appears at once, or nothing.
 * The file is written under a unique temporary name and hard-linked to `name`: `link` fails with EEXIST
 * when the name exists, so nobody ever sees a torn file and a record never changes once written.
 */
export async function writeFileOnce(
  dir: string,
  name: string,
  data: string,
  fsync: boolean,
): Promise<boolean> {
  const tmp = path.join(dir, `.${uniqueTag(name)}.part`);
  const handle = await fsp.open(tmp, 'wx', 0o644);
  try {
    await handle.writeFile(data, 'utf8');
    if (fsync) await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    if (!(await linkUnlessPresent(tmp, path.join(dir, name)))) return false;
    if (fsync) await fsyncDir(dir);
    return true;
  } finally {
    await fsp.rm(tmp, { force: true });
  }
}

/**
 * link(2) of `from` to `to` unless `to` exists: true when linked, false when `to` was there (another
 * writer won). sshfs answers a link to a taken name EPERM, not EEXIST (its SFTP hard-link request only
 * fails): any error with `to` present afterwards counts as taken, any other is thrown.
 */
export async function linkUnlessPresent(from: string, to: string): Promise<boolean> {
  try {
    await fsp.link(from, to);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    const present = await fsp.lstat(to).then(
      () => true,
      () => false,
    );
    if (present) return false;
    throw error;
  }
}

/** The names in `dir`; none when it does not exist (yet). */
export async function listNames(dir: string): Promise<string[]> {
  return fsp.readdir(dir).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [] as string[];
    throw error;
  });
}
