import type { Stats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import { imageIdSchema, nodeIdSchema } from '@app/contracts';
import { META_SUFFIX, type NodeLayout, piecesImageId } from './cache-layout';
import { type FolderReadOptions, isErrno, mapIoError, readFolderOrEmpty } from './fs-errors';
import type { ImageMeta } from './image-meta';
import type { JsonFileRead } from './shared-json-file';
import { type StoreContext, cacheContext } from './store-context';

/** One image id found in a node's images folder (see CacheEntries.listEntries). */
export interface CacheEntry {
  imageId: string;
  /** Present when the image is verified; absent for an orphan (no valid meta, or no file of that size). */
  meta?: ImageMeta;
  /** Why the entry is not verified (absent when `meta` is there), e.g. "meta file invalid: lastUsedAt: ...". */
  problem?: string;
  /** Size of the image file on disk (0 when there is none). */
  bytes: number;
  /** The image file's mtime, when there is a file. */
  modifiedMs?: number;
}

/** Sub-folders of the root named like node ids, sorted. */
export async function listNodes(store: StoreContext): Promise<string[]> {
  const context = { side: 'cache', what: `cache root ${store.root}` } as const;
  const entries = await readFolderOrEmpty(store.root, context, 'listing nodes', { withFileTypes: true });
  return entries
    .filter((entry) => entry.isDirectory() && nodeIdSchema.safeParse(entry.name).success)
    .map((entry) => entry.name)
    .sort();
}

/** The verified images of a node, by image id (the order of their meta files' names). */
export async function listImages(store: StoreContext, layout: NodeLayout): Promise<ImageMeta[]> {
  const images: ImageMeta[] = [];
  for (const imageId of metaFileIds((await readImagesFolder(layout)).sort())) {
    const { meta } = await store.inspect(layout, imageId, cacheContext(layout, imageId));
    if (meta) images.push(meta);
  }
  return images;
}

/** Ids of the images with a meta file on the node, sorted: one readdir, nothing opened. */
export async function listImageIds(layout: NodeLayout): Promise<string[]> {
  // ENOTDIR too: a node whose folder is a file holds no image, and the index of holders reads every node.
  return metaFileIds(await readImagesFolder(layout, { absent: ['ENOENT', 'ENOTDIR'] })).sort();
}

/** Every image id of the node's images folder, with its meta when verified (see CacheEntries.listEntries). */
export async function listEntries(store: StoreContext, layout: NodeLayout): Promise<CacheEntry[]> {
  const entries: CacheEntry[] = [];
  for (const imageId of entryIds(await readImagesFolder(layout))) {
    entries.push(await readEntry(store, layout, imageId));
  }
  return entries;
}

/** One image id's entry as listEntries reports it (meta and bytes both absent when nothing is there). */
export async function readEntry(
  store: StoreContext,
  layout: NodeLayout,
  imageId: string,
): Promise<CacheEntry> {
  const context = cacheContext(layout, imageId);
  const read = await store.readMetaChecked(layout, imageId, context);
  const meta = read.value;
  const stat = await store.imageStat(layout, imageId, context);
  const file = stat?.isFile() ? stat : undefined;
  const verified = meta !== undefined && file !== undefined && file.size === meta.size;
  const listOnly =
    read.missing === true &&
    stat === undefined &&
    (await store.entryExists(store.layout.piecesPath(layout, imageId), context, 'stat of the piece list'));
  return {
    imageId,
    ...(verified
      ? { meta: await withLastUse(store, layout, meta) }
      : { problem: listOnly ? PIECE_LIST_ONLY : entryProblem(read, stat, meta) }),
    bytes: file?.size ?? 0,
    ...(file ? { modifiedMs: file.mtimeMs } : {}),
  };
}

/** The names in a node's images folder; none when the node has no cache yet. */
export function readImagesFolder(layout: NodeLayout, options: FolderReadOptions = {}): Promise<string[]> {
  return readFolderOrEmpty(
    layout.images,
    { side: 'cache', what: `node ${layout.node}` },
    'listing images',
    options,
  );
}

/** The image ids that `names` hold meta files of, in their order; names of other things are left out. */
export function metaFileIds(names: readonly string[]): string[] {
  return names
    .filter((name) => name.endsWith(META_SUFFIX))
    .map((name) => name.slice(0, -META_SUFFIX.length))
    .filter((id) => imageIdSchema.safeParse(id).success);
}

/**
 * The problem of an entry that is only a piece list: its image and meta were deleted by a release that
 * does not know lists (or by hand); the cache cleaner removes it as an orphan.
 */
export const PIECE_LIST_ONLY = 'only a piece list is left (no image, no meta)';

/** The image ids `names` hold an image file, a meta file or a piece list of (each once), sorted. */
export function entryIds(names: readonly string[]): string[] {
  const ids = new Set<string>();
  for (const name of names) {
    const id = name.endsWith(META_SUFFIX)
      ? name.slice(0, -META_SUFFIX.length)
      : (piecesImageId(name) ?? name);
    if (imageIdSchema.safeParse(id).success) ids.add(id);
  }
  return [...ids].sort();
}

/** Why an entry of listEntries is not verified. */
export function entryProblem(
  read: JsonFileRead<ImageMeta>,
  stat: Pick<Stats, 'isFile' | 'size'> | undefined,
  meta: ImageMeta | undefined,
): string {
  if (read.invalid !== undefined) return `meta file invalid: ${read.invalid}`;
  if (!meta) return 'meta file missing (an interrupted publish or delete)';
  if (!stat) return 'image file missing';
  if (!stat.isFile()) return 'image path is not a regular file';
  return `image file has ${stat.size} bytes but its meta says ${meta.size}`;
}

/** The meta with its lastUsedAt raised to the last-use marker's mtime (see CopyPipeline.touchLastUsed). */
async function withLastUse(store: StoreContext, layout: NodeLayout, meta: ImageMeta): Promise<ImageMeta> {
  let usedMs: number;
  try {
    usedMs = (await fsp.stat(store.layout.usedPath(layout, meta.imageId))).mtimeMs;
  } catch (error) {
    if (isErrno(error, 'ENOENT', 'ENOTDIR')) return meta;
    throw mapIoError(error, cacheContext(layout, meta.imageId), 'stat of the last-use marker');
  }
  return usedMs > Date.parse(meta.lastUsedAt)
    ? { ...meta, lastUsedAt: new Date(usedMs).toISOString() }
    : meta;
}
