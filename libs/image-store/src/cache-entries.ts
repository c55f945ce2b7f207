import { collectStaleSwarmRecords } from './swarm-files';
import { type Litter, listLitter, removeLitter } from './cache-litter';
import {
  type CacheEntry,
  listEntries,
  listImageIds,
  listImages,
  listNodes,
  readEntry,
} from './cache-listing';
import { type DeletedImage, deleteImage } from './image-delete';
import { folderStamp } from './folder-stamp';
import type { ImageMeta } from './image-meta';
import {
  type RemoveLeftoverTmpOptions,
  type TmpFile,
  listTmp,
  removeLeftoverTmp,
  resumablePartials,
} from './leftover-tmp';
import { type Inspection, type StoreContext, cacheContext } from './store-context';

/**
 * What a node's cache holds, for the cache cleaner, the sweep of dead attempts' leftovers, `icc cache ls`
 * and the conductor's index of holders: listing, reading and deleting images, listing and removing partial
 * copies. It knows nothing of locks: callers hold the image's exclusive lock around deleteImage, and the
 * destination's exclusive lock around removeLeftoverTmp for one image. Each job is a file of its own:
 * cache-listing (entries), leftover-tmp (partial files), cache-litter (hidden files), image-delete.
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
    return listNodes(this.store);
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
    return listImages(this.store, this.store.layout.node(node));
  }

  /**
   * Ids of the images that have a meta file on the node: one readdir, nothing opened or verified (the
   * conductor's index of which node holds which image is built from this; a candidate source is verified
   * with verifiedImage before it is used).
   */
  async listImageIds(node: string): Promise<string[]> {
    return listImageIds(this.store.layout.node(node));
  }

  /**
   * The partial files in the node's tmp folder (copies and meta files being written, or left by dead
   * attempts), by image id; names that are not ours are left out. Deciding which are dead is the caller's
   * job (under the image's exclusive lock, see removeLeftoverTmp).
   */
  async listTmp(node: string): Promise<TmpFile[]> {
    return listTmp(this.store.layout.node(node));
  }

  /**
   * The partial copies in `node`'s tmp/ that a later attempt could continue: each record that verified
   * some bytes, and its partial file, by path. Unreadable or lying records are not resumable (a copy that
   * comes for the image discards them).
   */
  async resumablePartials(node: string): Promise<string[]> {
    return resumablePartials(this.store, this.store.layout.node(node));
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
    return removeLeftoverTmp(layout, id, options);
  }

  /**
   * Every image id found in the node's images folder (an image file, a meta file, or both), with its meta
   * when the image is verified (file present with the size its meta records) and the bytes on disk. An
   * entry without verified meta is an orphan: a crash between the steps of a publish or a delete left it,
   * and nobody can use it as a source. The cache cleaner reads this; copies never need it.
   */
  /**
   * The records of copies in progress (`.icc-swarms/`) whose copy died: not rewritten for the store's swarmStaleMs.
   * Returns how many files were removed.
   */
  async collectStaleSwarmRecords(now = Date.now()): Promise<number> {
    return collectStaleSwarmRecords(this.store, this.store.swarmStaleMs, now);
  }

  async listEntries(node: string): Promise<CacheEntry[]> {
    return listEntries(this.store, this.store.layout.node(node));
  }

  /** One image id's entry as listEntries reports it (meta and bytes both absent when nothing is there). */
  async entry(node: string, imageId: string): Promise<CacheEntry> {
    return readEntry(this.store, this.store.layout.node(node), this.store.layout.imageId(imageId));
  }

  /**
   * Files a network file system left in the images folder for a file replaced or deleted while open
   * (sshfs `.fuse_hidden*`, NFS `.nfs*`): removed by their file system once closed, left for ever when the
   * mount went away meanwhile. No image id starts with a dot, so they are never entries. `changedMs` is the
   * ctime: when it was hidden (a rename sets it), not the old file's mtime.
   */
  async listLitter(node: string): Promise<Litter[]> {
    return listLitter(this.store.layout.node(node));
  }

  /**
   * Removes litter (see listLitter) hidden longer ago than `olderThanMs`: the file it was can still be open
   * for a while (a copy reading a replaced image), and on NFS removing a file another client holds open
   * breaks that client's reads. Returns what it removed.
   */
  async removeLitter(node: string, olderThanMs: number, now = Date.now()): Promise<string[]> {
    return removeLitter(this.store.layout.node(node), olderThanMs, now);
  }

  /**
   * Deletes a published image. The caller holds the image's EXCLUSIVE lock (the cache cleaner does), so no
   * copy reads or writes it meanwhile. The meta goes first (and that is made durable), then the image,
   * then its piece list and any partial copy of it: a crash in between leaves an image without meta, which no copy trusts as
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
    return deleteImage(this.store, this.store.layout.node(node), this.store.layout.imageId(imageId), judged);
  }
}
