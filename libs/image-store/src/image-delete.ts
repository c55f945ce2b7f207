import type { Stats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import { ReasonError } from '@app/contracts';
import type { NodeLayout } from './cache-layout';
import type { CacheEntry } from './cache-listing';
import { ensureNodeFolder, fsyncDir, uniqueTag } from './durable-fs';
import { type IoContext, io, isErrno } from './fs-errors';
import { type ImageMeta, readMetaFile } from './image-meta';
import { removeLeftoverTmp } from './leftover-tmp';
import { type StoreContext, cacheContext, unlinkIfPresent } from './store-context';

/** What CacheEntries.deleteImage removed. */
export interface DeletedImage {
  removedMeta: boolean;
  removedImage: boolean;
  /** Size of the image file removed (0 when there was none). */
  bytes: number;
  /** Partial copies of the image removed with it. */
  tmpRemoved: number;
  /** With `judged`: what was there was not the judged entry (published again), and was left in place. */
  changed?: true;
}

/** One part of an image (its meta or its file) as the compare-and-delete step handles it. */
interface ImagePart<Seen> {
  /** Names the part in the actions of error messages. */
  noun: 'meta' | 'image';
  /** Where it is, and the tag of the unique tmp name it is moved aside to. */
  file: string;
  asideTag: string;
  /** What is read from the moved file to compare it with the judged entry, and the action naming it. */
  look: (moved: string) => Promise<Seen>;
  lookAction: string;
  removeAction: string;
}

/** The image a delete is about, and where its messages say it is. */
interface DeleteSite {
  store: StoreContext;
  layout: NodeLayout;
  id: string;
  context: IoContext;
}

/** absent: nothing was there; changed: not the judged one, put back; removed: the judged one, gone. */
type CompareOutcome<Seen> =
  { kind: 'absent' } | { kind: 'changed' } | { kind: 'removed'; seen: Seen; unlinked: boolean };

/** Deletes a published image, or with `judged` only that entry (see CacheEntries.deleteImage). */
export async function deleteImage(
  store: StoreContext,
  layout: NodeLayout,
  id: string,
  judged?: CacheEntry,
): Promise<DeletedImage> {
  const context = cacheContext(layout, id);
  const stat = await store.imageStat(layout, id, context);
  if (stat && !stat.isFile()) {
    throw new ReasonError(
      'IO_ERROR',
      `node ${layout.node}, image ${id}: the image path is not a regular file; not deleted`,
    );
  }
  const site: DeleteSite = { store, layout, id, context };
  const nothing = { removedMeta: false, removedImage: false, bytes: 0, tmpRemoved: 0 };
  const removedMeta = await removeMeta(site, judged);
  if (removedMeta === 'changed') return { ...nothing, changed: true };
  if (removedMeta && store.fsync)
    await io(context, 'fsync of the images folder', () => fsyncDir(layout.images));
  const image = await removeImageFile(site, stat, judged);
  if (image === 'changed') return { ...nothing, removedMeta, changed: true };
  if (image.removed && store.fsync)
    await io(context, 'fsync of the images folder', () => fsyncDir(layout.images));
  await io(context, 'removing the last-use marker', () => unlinkIfPresent(store.layout.usedPath(layout, id)));
  // After the image: a crash before this leaves a list without image, an orphan entry the next clean
  // removes. Removing a list published again meanwhile (a paused delete) only loses piece sharing.
  await io(context, 'removing the piece list', () => unlinkIfPresent(store.layout.piecesPath(layout, id)));
  const tmpRemoved = await removeLeftoverTmp(layout, id, {});
  return { removedMeta, removedImage: image.removed, bytes: image.bytes, tmpRemoved };
}

/** Removes the meta (with `judged`, only the judged one); whether one was there, or `changed`. */
async function removeMeta(site: DeleteSite, judged: CacheEntry | undefined): Promise<boolean | 'changed'> {
  const { store, layout, id, context } = site;
  const metaPath = store.layout.metaPath(layout, id);
  if (!judged) return io(context, 'removing the meta file', () => unlinkIfPresent(metaPath));
  const meta = await removeIfJudged(
    site,
    {
      noun: 'meta',
      file: metaPath,
      asideTag: 'del-meta',
      look: async (moved) => (await readMetaFile(moved, id)).value,
      lookAction: 'reading the moved meta',
      removeAction: 'removing the meta file',
    },
    async (moved) =>
      // An orphan carries no meta: the moved one is a new publish's when it now describes the image there.
      judged.meta
        ? !sameImage(moved, judged.meta)
        : moved !== undefined && (await store.imageStat(layout, id, context))?.size === moved.size,
  );
  return meta.kind === 'changed' ? 'changed' : meta.kind === 'removed';
}

/**
 * Removes the image file seen as `stat` (with `judged`, only the judged one); what it removed, or
 * `changed`.
 */
async function removeImageFile(
  site: DeleteSite,
  stat: Stats | undefined,
  judged: CacheEntry | undefined,
): Promise<{ removed: boolean; bytes: number } | 'changed'> {
  const { store, layout, id, context } = site;
  const imagePath = store.layout.imagePath(layout, id);
  if (!judged) {
    if (!stat) return { removed: false, bytes: 0 };
    const removed = await io(context, 'removing the image', () => unlinkIfPresent(imagePath));
    return { removed, bytes: removed ? stat.size : 0 };
  }
  const image = await removeIfJudged(
    site,
    {
      noun: 'image',
      file: imagePath,
      asideTag: 'del-image',
      look: (moved) => fsp.lstat(moved),
      lookAction: 'stat of the moved image',
      removeAction: 'removing the image',
    },
    // Published again after our check: its publisher writes its meta; our old meta is gone, rightly.
    (moved) => !isJudgedFile(moved, judged),
  );
  if (image.kind === 'changed') return 'changed';
  if (image.kind === 'absent') return { removed: false, bytes: 0 };
  return { removed: image.unlinked, bytes: image.unlinked ? image.seen.size : 0 };
}

/**
 * Move aside, compare, then remove or put back: the part is renamed to a unique name in tmp/ (atomic, and
 * nobody else uses that name), so what is compared is exactly what gets removed; one that is not the
 * judged one is linked back, never over a newer one.
 */
async function removeIfJudged<Seen>(
  { store, layout, id, context }: DeleteSite,
  part: ImagePart<Seen>,
  isChanged: (seen: Seen) => boolean | Promise<boolean>,
): Promise<CompareOutcome<Seen>> {
  const aside = store.layout.tmpPath(layout, id, uniqueTag(part.asideTag));
  const moved = await io(context, `moving the ${part.noun} aside`, () => moveAside(layout, part.file, aside));
  if (!moved) return { kind: 'absent' };
  const seen = await io(context, part.lookAction, () => part.look(aside));
  if (await isChanged(seen)) {
    await io(context, `putting the ${part.noun} back`, () => putBack(aside, part.file));
    return { kind: 'changed' };
  }
  const unlinked = await io(context, part.removeAction, () => unlinkIfPresent(aside));
  return { kind: 'removed', seen, unlinked };
}

/** Renames `file` to `aside` in the node's tmp/; false when there was nothing to move. */
async function moveAside(layout: NodeLayout, file: string, aside: string): Promise<boolean> {
  await ensureNodeFolder(layout, layout.tmp);
  try {
    await fsp.rename(file, aside);
    return true;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return false;
    throw error;
  }
}

/** Links a moved file back to its place unless a newer one is there already, then drops the moved name. */
async function putBack(moved: string, place: string): Promise<void> {
  await fsp.link(moved, place).catch((error: unknown) => {
    if (!isErrno(error, 'EEXIST')) throw error;
  });
  await unlinkIfPresent(moved);
}

/** Whether a moved meta describes the judged image (lastUsedAt aside: it is not the image's identity). */
export function sameImage(moved: ImageMeta | undefined, judged: ImageMeta): boolean {
  if (!moved) return false;
  return (
    moved.sha256 === judged.sha256 &&
    moved.size === judged.size &&
    moved.createdAt === judged.createdAt &&
    moved.attemptId === judged.attemptId &&
    moved.fencingToken === judged.fencingToken
  );
}

/** Whether a moved image file is the judged entry's (same size and mtime), not one published since. */
export function isJudgedFile(moved: Pick<Stats, 'size' | 'mtimeMs'>, judged: CacheEntry): boolean {
  return moved.size === judged.bytes && moved.mtimeMs === judged.modifiedMs;
}
