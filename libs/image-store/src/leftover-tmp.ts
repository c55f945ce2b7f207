import type { Stats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { imageIdSchema, parseField } from '@app/contracts';
import { type NodeLayout, RECORD_TAG_SUFFIX, parseTmpName } from './cache-layout';
import { type IoContext, io, isErrno, mapIoError, readFolderOrEmpty } from './fs-errors';
import { readResumableRecord } from './partial-copy';
import { type StoreContext, sizeSchema } from './store-context';

export interface RemoveLeftoverTmpOptions {
  /** Only remove files not modified for this long (for sweeps made without holding the image's lock). */
  olderThanMs?: number;
  /** Leave these paths (e.g. resumable partials a later attempt may continue). */
  keep?: ReadonlySet<string>;
}

/** A partial file of the node's tmp folder, by the image it belongs to. */
export interface TmpFile {
  imageId: string;
  path: string;
}

/** The partial files in the node's tmp folder, by image id (see CacheEntries.listTmp). */
export async function listTmp(layout: NodeLayout): Promise<TmpFile[]> {
  const context: IoContext = { side: 'cache', what: `node ${layout.node}` };
  return tmpFiles(layout.tmp, await readFolderOrEmpty(layout.tmp, context, 'listing partial copies'));
}

/** The resumable partial copies of the node and their records, by path (see CacheEntries.resumablePartials). */
export async function resumablePartials(store: StoreContext, layout: NodeLayout): Promise<string[]> {
  const found: string[] = [];
  for (const tmp of await listTmp(layout)) {
    const attemptId = recordAttemptId(path.basename(tmp.path));
    if (attemptId === undefined) continue;
    const record = await readResumableRecord(tmp.path, tmp.imageId, attemptId).catch(() => undefined);
    if (record) found.push(tmp.path, store.layout.tmpPath(layout, tmp.imageId, attemptId));
  }
  return found;
}

/** Removes the node's leftover partial files; returns how many (see CacheEntries.removeLeftoverTmp). */
export async function removeLeftoverTmp(
  layout: NodeLayout,
  imageId: string | undefined,
  options: RemoveLeftoverTmpOptions,
): Promise<number> {
  const olderThanMs =
    options.olderThanMs === undefined
      ? undefined
      : parseField(sizeSchema, options.olderThanMs, 'olderThanMs');
  const context: IoContext = { side: 'cache', what: `node ${layout.node}, tmp folder` };
  const names = await readFolderOrEmpty(layout.tmp, context, 'listing partial copies');
  const cutoff = olderThanMs === undefined ? undefined : Date.now() - olderThanMs;
  let removed = 0;
  for (const name of names) {
    if (imageId !== undefined && parseTmpName(name)?.imageId !== imageId) continue;
    const file = path.join(layout.tmp, name);
    if (options.keep?.has(file)) continue;
    let stat;
    try {
      stat = await fsp.lstat(file);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) continue; // another cleaner got there first
      throw mapIoError(error, context, `stat of ${name}`);
    }
    if (!isLeftover(stat, cutoff)) continue;
    await io(context, `removing ${name}`, () => fsp.rm(file, { force: true }));
    removed += 1;
  }
  return removed;
}

/** The names of `tmpDir` that are partial files of a valid image id; names that are not ours are left out. */
export function tmpFiles(tmpDir: string, names: readonly string[]): TmpFile[] {
  return names.flatMap((name) => {
    const parsed = parseTmpName(name);
    if (!parsed || !imageIdSchema.safeParse(parsed.imageId).success) return [];
    return [{ imageId: parsed.imageId, path: path.join(tmpDir, name) }];
  });
}

/** The attempt whose resume record a tmp name is; undefined for any other partial file. */
export function recordAttemptId(name: string): string | undefined {
  const tag = parseTmpName(name)?.tag;
  return tag?.endsWith(RECORD_TAG_SUFFIX) ? tag.slice(0, -RECORD_TAG_SUFFIX.length) : undefined;
}

/** A regular file not modified since `cutoff` (any file without one); folders are never removed. */
export function isLeftover(stat: Pick<Stats, 'isFile' | 'mtimeMs'>, cutoff: number | undefined): boolean {
  return stat.isFile() && (cutoff === undefined || stat.mtimeMs <= cutoff);
}
