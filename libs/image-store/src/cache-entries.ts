import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ReasonError, imageIdSchema, nodeIdSchema, parseField } from '@app/contracts';
import { META_SUFFIX, type NodeLayout, RECORD_TAG_SUFFIX, parseTmpName } from './cache-layout';
import { ensureNodeFolder, fsyncDir, uniqueTag } from './durable-fs';
import { folderStamp } from './folder-stamp';
import { type IoContext, io, isErrno, mapIoError } from './fs-errors';
import { type ImageMeta, readMetaFile } from './image-meta';
import { readResumableRecord } from './partial-copy';
import type { JsonFileRead } from './shared-json-file';
import {
  type Inspection,
  type StoreContext,
  cacheContext,
  sizeSchema,
  unlinkIfPresent,
} from './store-context';

/** Name prefixes of files hidden by a network file system (sshfs without hard_remove, NFS silly renames). */
export const LITTER_PREFIXES = ['.fuse_hidden', '.nfs'];

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

export interface RemoveLeftoverTmpOptions {
  /** Only remove files not modified for this long (for sweeps made without holding the image's lock). */
  olderThanMs?: number;
  /** Leave these paths (e.g. resumable partials a later attempt may continue). */
  keep?: ReadonlySet<string>;
}

/**
 * What a node's cache holds, for the cache cleaner, the sweep of dead attempts' leftovers, `icc cache ls`
 * and the conductor's index of holders: listing, reading and deleting images, listing and removing partial
 * copies. It knows nothing of locks: callers hold the image's exclusive lock around deleteImage, and the
 * destination's exclusive lock around removeLeftoverTmp for one image.
 */
export class CacheEntries {
  constructor(private readonly store: StoreContext) {}

  imagePath(node: string, imageId: string): string {
    return this.store.layout.imagePath(this.store.layout.node(node), this.store.layout.imageId(imageId));
  }

  metaPath(node: string, imageId: string): string {
    return this.store.layout.metaPath(this.store.layout.node(node), this.store.layout.imageId(imageId));
  }

  /** The image's meta if the file holds valid meta for exactly this image, else undefined. */
  async readMeta(node: string, imageId: string): Promise<ImageMeta | undefined> {
    const layout = this.store.layout.node(node);
    const id = this.store.layout.imageId(imageId);
    return (await this.store.readMetaChecked(layout, id, cacheContext(layout, id))).value;
  }

  /** Whether the image is verified (as verifiedImage, without expectations), and why not when it is not. */
  async inspectImage(node: string, imageId: string): Promise<Inspection> {
    const layout = this.store.layout.node(node);
    const id = this.store.layout.imageId(imageId);
    return this.store.inspect(layout, id, cacheContext(layout, id));
  }

  /** Sub-folders of the root named like node ids (anything else in the root is ignored). */
  async listNodes(): Promise<string[]> {
    let entries;
    try {
      entries = await fsp.readdir(this.store.root, { withFileTypes: true });
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return [];
      throw mapIoError(error, { side: 'cache', what: `cache root ${this.store.root}` }, 'listing nodes');
    }
    return entries
      .filter((entry) => entry.isDirectory() && nodeIdSchema.safeParse(entry.name).success)
      .map((entry) => entry.name)
      .sort();
  }

  /** CACHE_ROOT's signature (folder-stamp.ts): changes when a node folder is added or removed. One stat. */
  rootStamp(): Promise<string | undefined> {
    return folderStamp(this.store.root, `cache root ${this.store.root}`);
  }

  /** The signature of the node's `images/` folder: changes when an image is published or deleted. One stat. */
  imagesFolderStamp(node: string): Promise<string | undefined> {
    const layout = this.store.layout.node(node);
    return folderStamp(layout.images, `node ${layout.node}`);
  }

  /** The node's verified images, by image id. */
  async listImages(node: string): Promise<ImageMeta[]> {
    const layout = this.store.layout.node(node);
    const names = await this.readImagesFolder(layout);
    const images: ImageMeta[] = [];
    for (const name of names.sort()) {
      if (!name.endsWith(META_SUFFIX)) continue;
      const imageId = name.slice(0, -META_SUFFIX.length);
      if (!imageIdSchema.safeParse(imageId).success) continue;
      const { meta } = await this.store.inspect(layout, imageId, cacheContext(layout, imageId));
      if (meta) images.push(meta);
    }
    return images;
  }

  /**
   * Ids of the images that have a meta file on the node: one readdir, nothing opened or verified (the
   * conductor's index of which node holds which image is built from this; a candidate source is verified
   * with verifiedImage before it is used).
   */
  async listImageIds(node: string): Promise<string[]> {
    const layout = this.store.layout.node(node);
    let names: string[];
    try {
      names = await fsp.readdir(layout.images);
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return [];
      throw mapIoError(error, { side: 'cache', what: `node ${layout.node}` }, 'listing images');
    }
    return names
      .filter((name) => name.endsWith(META_SUFFIX))
      .map((name) => name.slice(0, -META_SUFFIX.length))
      .filter((id) => imageIdSchema.safeParse(id).success)
      .sort();
  }

  /**
   * The partial files in the node's tmp folder (copies and meta files being written, or left by dead
   * attempts), by image id; names that are not ours are left out. Deciding which are dead is the caller's
   * job (under the image's exclusive lock, see removeLeftoverTmp).
   */
  async listTmp(node: string): Promise<Array<{ imageId: string; path: string }>> {
    const layout = this.store.layout.node(node);
    let names: string[];
    try {
      names = await fsp.readdir(layout.tmp);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return [];
      throw mapIoError(error, { side: 'cache', what: `node ${layout.node}` }, 'listing partial copies');
    }
    return names.flatMap((name) => {
      const parsed = parseTmpName(name);
      if (!parsed || !imageIdSchema.safeParse(parsed.imageId).success) return [];
      return [{ imageId: parsed.imageId, path: path.join(layout.tmp, name) }];
    });
  }

  /**
   * The partial copies in `node`'s tmp/ that a later attempt could continue: each record that verified
   * some bytes, and its partial file, by path. Unreadable or lying records are not resumable (a copy that
   * comes for the image discards them).
   */
  async resumablePartials(node: string): Promise<string[]> {
    const found: string[] = [];
    for (const tmp of await this.listTmp(node)) {
      const tag = parseTmpName(path.basename(tmp.path))!.tag;
      if (!tag.endsWith(RECORD_TAG_SUFFIX)) continue;
      const attemptId = tag.slice(0, -RECORD_TAG_SUFFIX.length);
      const record = await readResumableRecord(tmp.path, tmp.imageId, attemptId).catch(() => undefined);
      if (record)
        found.push(tmp.path, this.store.layout.tmpPath(this.store.layout.node(node), tmp.imageId, attemptId));
    }
    return found;
  }

  /**
   * Removes partial copies of `imageId` on `node` (all partial copies when no id is given) and returns how
   * many. Safe for one image while holding its exclusive lock: any tmp of that image is then a dead or
   * aborted attempt's. Without an id, other images may be copying right now: pass `olderThanMs`.
   */
  async removeLeftoverTmp(
    node: string,
    imageId?: string,
    options: RemoveLeftoverTmpOptions = {},
  ): Promise<number> {
    const layout = this.store.layout.node(node);
    const id = imageId === undefined ? undefined : this.store.layout.imageId(imageId);
    const olderThanMs =
      options.olderThanMs === undefined
        ? undefined
        : parseField(sizeSchema, options.olderThanMs, 'olderThanMs');
    const context: IoContext = { side: 'cache', what: `node ${layout.node}, tmp folder` };
    let names: string[];
    try {
      names = await fsp.readdir(layout.tmp);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return 0;
      throw mapIoError(error, context, 'listing partial copies');
    }
    const cutoff = olderThanMs === undefined ? undefined : Date.now() - olderThanMs;
    let removed = 0;
    for (const name of names) {
      if (id !== undefined && parseTmpName(name)?.imageId !== id) continue;
      const file = path.join(layout.tmp, name);
      if (options.keep?.has(file)) continue;
      let stat;
      try {
        stat = await fsp.lstat(file);
      } catch (error) {
        if (isErrno(error, 'ENOENT')) continue; // another cleaner got there first
        throw mapIoError(error, context, `stat of ${name}`);
      }
      if (!stat.isFile() || (cutoff !== undefined && stat.mtimeMs > cutoff)) continue;
      await io(context, `removing ${name}`, () => fsp.rm(file, { force: true }));
      removed += 1;
    }
    return removed;
  }

  /**
   * Every image id found in the node's images folder (an image file, a meta file, or both), with its meta
   * when the image is verified (file present with the size its meta records) and the bytes on disk. An
   * entry without verified meta is an orphan: a crash between the steps of a publish or a delete left it,
   * and nobody can use it as a source. The cache cleaner reads this; copies never need it.
   */
  async listEntries(node: string): Promise<CacheEntry[]> {
    const layout = this.store.layout.node(node);
    const names = await this.readImagesFolder(layout);
    const ids = new Set<string>();
    for (const name of names) {
      const id = name.endsWith(META_SUFFIX) ? name.slice(0, -META_SUFFIX.length) : name;
      if (imageIdSchema.safeParse(id).success) ids.add(id);
    }
    const entries: CacheEntry[] = [];
    for (const imageId of [...ids].sort()) entries.push(await this.readEntry(layout, imageId));
    return entries;
  }

  /** One image id's entry as listEntries reports it (meta and bytes both absent when nothing is there). */
  async entry(node: string, imageId: string): Promise<CacheEntry> {
    return this.readEntry(this.store.layout.node(node), this.store.layout.imageId(imageId));
  }

  private async readEntry(layout: NodeLayout, imageId: string): Promise<CacheEntry> {
    const context = cacheContext(layout, imageId);
    const read = await this.store.readMetaChecked(layout, imageId, context);
    const meta = read.value;
    const stat = await this.lstatImage(layout, imageId, context);
    const file = stat?.isFile() ? stat : undefined;
    const verified = meta !== undefined && file !== undefined && file.size === meta.size;
    return {
      imageId,
      ...(verified
        ? { meta: await this.withLastUse(layout, meta) }
        : { problem: entryProblem(read, stat, meta) }),
      bytes: file?.size ?? 0,
      ...(file ? { modifiedMs: file.mtimeMs } : {}),
    };
  }

  /** The meta with its lastUsedAt raised to the last-use marker's mtime (see CopyPipeline.touchLastUsed). */
  private async withLastUse(layout: NodeLayout, meta: ImageMeta): Promise<ImageMeta> {
    let usedMs: number;
    try {
      usedMs = (await fsp.stat(this.store.layout.usedPath(layout, meta.imageId))).mtimeMs;
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return meta;
      throw mapIoError(error, cacheContext(layout, meta.imageId), 'stat of the last-use marker');
    }
    return usedMs > Date.parse(meta.lastUsedAt)
      ? { ...meta, lastUsedAt: new Date(usedMs).toISOString() }
      : meta;
  }

  /**
   * Files a network file system left in the images folder for a file replaced or deleted while open
   * (sshfs `.fuse_hidden*`, NFS `.nfs*`): removed by their file system once closed, left for ever when the
   * mount went away meanwhile. No image id starts with a dot, so they are never entries. `changedMs` is the
   * ctime: when it was hidden (a rename sets it), not the old file's mtime.
   */
  async listLitter(node: string): Promise<Array<{ name: string; bytes: number; changedMs: number }>> {
    const layout = this.store.layout.node(node);
    const litter: Array<{ name: string; bytes: number; changedMs: number }> = [];
    for (const name of await this.readImagesFolder(layout)) {
      if (!LITTER_PREFIXES.some((prefix) => name.startsWith(prefix))) continue;
      const stat = await fsp.lstat(path.join(layout.images, name)).catch(() => undefined);
      if (stat?.isFile()) litter.push({ name, bytes: stat.size, changedMs: stat.ctimeMs });
    }
    return litter.sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Removes litter (see listLitter) hidden longer ago than `olderThanMs`: the file it was can still be open
   * for a while (a copy reading a replaced image), and on NFS removing a file another client holds open
   * breaks that client's reads. Returns what it removed.
   */
  async removeLitter(node: string, olderThanMs: number, now = Date.now()): Promise<string[]> {
    const layout = this.store.layout.node(node);
    const removed: string[] = [];
    for (const item of await this.listLitter(node)) {
      if (now - item.changedMs < olderThanMs) continue;
      if (await unlinkIfPresent(path.join(layout.images, item.name)).catch(() => false))
        removed.push(item.name);
    }
    return removed;
  }

  /**
   * Deletes a published image. The caller holds the image's EXCLUSIVE lock (the cache cleaner does), so no
   * copy reads or writes it meanwhile. The meta goes first (and that is made durable), then the image,
   * then any partial copy of it: a crash in between leaves an image without meta, which no copy trusts as
   * a source or as already present, and which the next clean removes as an orphan. Any part already
   * missing is fine (an interrupted earlier delete); a folder or other non-file at the image path is left
   * alone and reported as an error.
   *
   * With `judged` (the entry the caller decided on, under its lock) the delete removes only that entry:
   * the lock is not enforced by storage, and a caller paused after its last check (a partitioned host whose
   * file calls run late) may delete after another holder published the image again. Meta and image are
   * first moved to unique names in tmp/ (a rename: atomic, and nobody else uses those names), then compared
   * with what was judged; one that is not the judged one is linked back (never over a newer one), and the
   * delete stops there with `changed`.
   */
  async deleteImage(node: string, imageId: string, judged?: CacheEntry): Promise<DeletedImage> {
    const layout = this.store.layout.node(node);
    const id = this.store.layout.imageId(imageId);
    const context = cacheContext(layout, id);
    const imagePath = this.store.layout.imagePath(layout, id);
    const metaPath = this.store.layout.metaPath(layout, id);
    const stat = await this.lstatImage(layout, id, context);
    if (stat && !stat.isFile()) {
      throw new ReasonError(
        'IO_ERROR',
        `node ${layout.node}, image ${id}: the image path is not a regular file; not deleted`,
      );
    }
    const nothing = { removedMeta: false, removedImage: false, bytes: 0, tmpRemoved: 0 };
    let removedMeta: boolean;
    if (judged) {
      const moved = await io(context, 'moving the meta aside', () =>
        this.moveAside(layout, id, metaPath, 'del-meta'),
      );
      if (moved) {
        const meta = (await io(context, 'reading the moved meta', () => readMetaFile(moved, id))).value;
        // An orphan carries no meta: the moved one is a new publish's when it now describes the image there.
        const changed = judged.meta
          ? !sameImage(meta, judged.meta)
          : meta !== undefined && (await this.lstatImage(layout, id, context))?.size === meta.size;
        if (changed) {
          await io(context, 'putting the meta back', () => this.putBack(moved, metaPath));
          return { ...nothing, changed: true };
        }
        await io(context, 'removing the meta file', () => unlinkIfPresent(moved));
      }
      removedMeta = moved !== undefined;
    } else {
      removedMeta = await io(context, 'removing the meta file', () => unlinkIfPresent(metaPath));
    }
    if (removedMeta && this.store.fsync)
      await io(context, 'fsync of the images folder', () => fsyncDir(layout.images));
    let removedImage = false;
    let bytes = 0;
    if (judged) {
      const moved = await io(context, 'moving the image aside', () =>
        this.moveAside(layout, id, imagePath, 'del-image'),
      );
      if (moved) {
        const movedStat = await io(context, 'stat of the moved image', () => fsp.lstat(moved));
        if (movedStat.size !== judged.bytes || movedStat.mtimeMs !== judged.modifiedMs) {
          // Published again after our check: its publisher writes its meta; our old meta is gone, rightly.
          await io(context, 'putting the image back', () => this.putBack(moved, imagePath));
          return { ...nothing, removedMeta, changed: true };
        }
        removedImage = await io(context, 'removing the image', () => unlinkIfPresent(moved));
        bytes = removedImage ? movedStat.size : 0;
      }
    } else if (stat) {
      removedImage = await io(context, 'removing the image', () => unlinkIfPresent(imagePath));
      bytes = removedImage ? stat.size : 0;
    }
    if (removedImage && this.store.fsync)
      await io(context, 'fsync of the images folder', () => fsyncDir(layout.images));
    await io(context, 'removing the last-use marker', () =>
      unlinkIfPresent(this.store.layout.usedPath(layout, id)),
    );
    const tmpRemoved = await this.removeLeftoverTmp(layout.node, id);
    return { removedMeta, removedImage, bytes, tmpRemoved };
  }

  /** Renames `file` to a unique partial name of the image in tmp/; undefined when there was none. */
  private async moveAside(layout: NodeLayout, imageId: string, file: string, tag: string) {
    const aside = this.store.layout.tmpPath(layout, imageId, uniqueTag(tag));
    await ensureNodeFolder(layout, layout.tmp);
    try {
      await fsp.rename(file, aside);
      return aside;
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined;
      throw error;
    }
  }

  /** Links a moved file back to its place unless a newer one is there already, then drops the moved name. */
  private async putBack(moved: string, place: string): Promise<void> {
    await fsp.link(moved, place).catch((error: unknown) => {
      if (!isErrno(error, 'EEXIST')) throw error;
    });
    await unlinkIfPresent(moved);
  }

  private async lstatImage(layout: NodeLayout, imageId: string, context: IoContext) {
    try {
      return await fsp.lstat(this.store.layout.imagePath(layout, imageId));
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
      throw mapIoError(error, context, 'stat of the image');
    }
  }

  /** The names in a node's images folder; none when the node has no cache yet. */
  private async readImagesFolder(layout: NodeLayout): Promise<string[]> {
    try {
      return await fsp.readdir(layout.images);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return [];
      throw mapIoError(error, { side: 'cache', what: `node ${layout.node}` }, 'listing images');
    }
  }
}

/** Whether a moved meta describes the judged image (lastUsedAt aside: it is not the image's identity). */
function sameImage(moved: ImageMeta | undefined, judged: ImageMeta): boolean {
  if (!moved) return false;
  return (
    moved.sha256 === judged.sha256 &&
    moved.size === judged.size &&
    moved.createdAt === judged.createdAt &&
    moved.attemptId === judged.attemptId &&
    moved.fencingToken === judged.fencingToken
  );
}

/** Why an entry of listEntries is not verified. */
function entryProblem(
  read: JsonFileRead<ImageMeta>,
  stat: { isFile(): boolean; size: number } | undefined,
  meta: ImageMeta | undefined,
): string {
  if (read.invalid !== undefined) return `meta file invalid: ${read.invalid}`;
  if (!meta) return 'meta file missing (an interrupted publish or delete)';
  if (!stat) return 'image file missing';
  if (!stat.isFile()) return 'image path is not a regular file';
  return `image file has ${stat.size} bytes but its meta says ${meta.size}`;
}
