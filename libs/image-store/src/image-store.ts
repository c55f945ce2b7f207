import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import {
  ConductorError,
  InvalidFieldError,
  holderIdSchema,
  imageIdSchema,
  nodeIdSchema,
  parseField,
  byteCountSchema,
  requestIdSchema,
  sha256Schema as contractSha256Schema,
} from '@app/contracts';
import { CacheLayout, META_SUFFIX, type NodeLayout, parseTmpName } from './cache-layout';
import { ensureNodeFolder, fsyncDir, uniqueTag, writeFileAtomic } from './durable-fs';
import { type IoContext, io, isErrno, mapIoError } from './fs-errors';
import { streamCopy, throwIfAborted } from './image-copier';
import { type ImageMeta, readMetaFile, serializeMeta } from './image-meta';
import {
  NODE_MARKER_VERSION,
  type NodeMarker,
  readNodeMarker,
  registeredBySchema,
  serializeNodeMarker,
} from './node-marker';
import { type JsonFileRead, OncePerFileVersion } from './shared-json-file';

export interface ImageStoreOptions {
  /** CACHE_ROOT: the shared folder holding one sub-folder per node. */
  root: string;
  /** fsync files and folders at each publish step (default true). Off only for tests and benchmarks. */
  fsync?: boolean;
  /**
   * Problems that must not replace the error being reported (a partial copy that could not be removed
   * after a failure), and broken files in the shared folder (an invalid meta file or node marker: once per
   * file and mtime, the message names the file and the field). Defaults to process.emitWarning.
   */
  onWarning?: (message: string, error?: unknown) => void;
}

/** What an image must be; omitted fields are not checked. sha256 is 64 hex digits (any case). */
export interface ExpectedImage {
  sha256?: string;
  size?: number;
}

export interface CopyImageRequest {
  imageId: string;
  source: string;
  destination: string;
  /** Checked instead of the source's meta when given (README, "The copy"). */
  expected?: ExpectedImage;
  /** Unique per attempt: names the partial copy and is recorded in the meta. */
  attemptId: string;
  requestId?: string;
  /** The destination lock's generation, recorded in the meta. */
  fencingToken?: number;
  signal?: AbortSignal;
  /** Called after every chunk; a throw fails the copy (nothing published). */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /**
   * Called right before each irreversible step, after the bytes were verified: 'publish' (the old meta's
   * removal and the rename that publishes the image) and 'meta' (writing the new meta). If it throws, the
   * step is not taken and that error propagates unchanged: the conductor checks here that it still holds
   * the destination lock (an abort signal is not enough: a holder resumed after a pause runs its own code
   * before the watchdog that would abort it). A pause between this check and the step stays possible; the
   * bytes published then were still verified against the same sha256, so a late writer can only replace
   * the image with identical content (its meta then records its own, older fencingToken and attemptId).
   */
  beforeIrreversibleStep?: (step: IrreversibleStep) => Promise<void> | void;
}

export type IrreversibleStep = 'publish' | 'meta';

export interface CopyImageOutcome {
  status: 'copied' | 'already-present';
  /** Bytes copied by this call: 0 when already present (the image's size is meta.size). */
  bytes: number;
  /** sha256 of the image at the destination (meta.sha256). */
  sha256: string;
  /** The destination's meta. */
  meta: ImageMeta;
  /** Streaming, hashing, fsync and publishing; 0 when already present. */
  copyMs: number;
  /** Checking the source and the destination before copying (the copy itself hashes inline). */
  verifyMs: number;
}

export interface ImportImageOptions {
  signal?: AbortSignal;
  /** Names the partial copy; a fresh unique id by default. */
  attemptId?: string;
}

/** One image id found in a node's images folder (see ImageStore.listEntries). */
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

/** What ImageStore.deleteImage removed. */
export interface DeletedImage {
  removedMeta: boolean;
  removedImage: boolean;
  /** Size of the image file removed (0 when there was none). */
  bytes: number;
  /** Partial copies of the image removed with it. */
  tmpRemoved: number;
}

export interface RemoveLeftoverTmpOptions {
  /** Only remove files not modified for this long (for sweeps made without holding the image's lock). */
  olderThanMs?: number;
}

// One source of truth for the wire-level rules; this API also accepts upper-case checksums.
const sha256Schema = z.preprocess((s) => (typeof s === 'string' ? s.toLowerCase() : s), contractSha256Schema);
const sizeSchema = byteCountSchema;
const fencingTokenSchema = byteCountSchema;

/** Why an image is not verified, or its meta when it is. */
export type Inspection = { meta: ImageMeta; problem?: undefined } | { meta?: undefined; problem: string };

/** A node's registration: its marker, or why it counts as unknown. */
export type NodeRegistration =
  | { registered: true; marker: NodeMarker; problem?: undefined }
  | { registered: false; marker?: undefined; problem: string };

/**
 * A node cache under CACHE_ROOT and the verified, atomic copy between two of them. It knows nothing of
 * locks: callers hold the source's shared and the destination's exclusive lock around copyImage, and the
 * destination's exclusive lock around removeLeftoverTmp for one image.
 */
export class ImageStore {
  readonly root: string;
  private readonly layout: CacheLayout;
  private readonly fsync: boolean;
  private readonly onWarning: (message: string, error?: unknown) => void;
  private readonly reported = new OncePerFileVersion();

  constructor(options: ImageStoreOptions) {
    this.layout = new CacheLayout(options.root);
    this.root = this.layout.root;
    this.fsync = options.fsync ?? true;
    this.onWarning =
      options.onWarning ??
      ((message, error) =>
        process.emitWarning(
          error === undefined ? message : `${message}: ${describeError(error)}`,
          'ImageStoreWarning',
        ));
  }

  nodeLayout(node: string): NodeLayout {
    return this.layout.node(node);
  }

  imagePath(node: string, imageId: string): string {
    return this.layout.imagePath(this.layout.node(node), this.layout.imageId(imageId));
  }

  metaPath(node: string, imageId: string): string {
    return this.layout.metaPath(this.layout.node(node), this.layout.imageId(imageId));
  }

  /** The image's meta if the file holds valid meta for exactly this image, else undefined. */
  async readMeta(node: string, imageId: string): Promise<ImageMeta | undefined> {
    const layout = this.layout.node(node);
    const id = this.layout.imageId(imageId);
    return (await this.readMetaChecked(layout, id, cacheContext(layout, id))).value;
  }

  /** Whether the image is verified (as verifiedImage, without expectations), and why not when it is not. */
  async inspectImage(node: string, imageId: string): Promise<Inspection> {
    const layout = this.layout.node(node);
    const id = this.layout.imageId(imageId);
    return this.inspect(layout, id, cacheContext(layout, id));
  }

  /**
   * Whether `node` is registered: `<node>/node.json` holds a valid marker for exactly this node. A missing
   * folder or marker is an unknown node; so is a broken marker, reported once per file version.
   */
  async nodeRegistration(node: string): Promise<NodeRegistration> {
    const layout = this.layout.node(node);
    const read = await io({ side: 'cache', what: `node ${layout.node}` }, 'reading the node marker', () =>
      readNodeMarker(layout.marker, layout.node),
    );
    if (read.value) return { registered: true, marker: read.value };
    if (read.missing) return { registered: false, problem: `no marker ${layout.marker}` };
    this.reportInvalid(
      layout.marker,
      read,
      `node ${layout.node} counts as not registered until it is fixed (icc node add ${layout.node})`,
    );
    return { registered: false, problem: `invalid marker ${layout.marker}: ${read.invalid}` };
  }

  async isRegistered(node: string): Promise<boolean> {
    return (await this.nodeRegistration(node)).registered;
  }

  /**
   * Registers `node`: creates its folder if needed (CACHE_ROOT must exist) and writes its marker atomically.
   * An existing valid marker is kept (created: false); a broken one is replaced.
   */
  async registerNode(node: string, registeredBy: string): Promise<{ marker: NodeMarker; created: boolean }> {
    const layout = this.layout.node(node);
    const by = parseField(registeredBySchema, registeredBy, 'registeredBy');
    const current = await this.nodeRegistration(layout.node);
    if (current.registered) return { marker: current.marker, created: false };
    const context: IoContext = { side: 'cache', what: `node ${layout.node}` };
    const createdFolder = await io(context, 'creating the node folder', async () => {
      try {
        await fsp.mkdir(layout.dir);
        return true;
      } catch (error) {
        // Registration creates the node's folder, never CACHE_ROOT itself (a mistyped root stays visible).
        if (isErrno(error, 'ENOENT'))
          throw new ConductorError(
            'IO_ERROR',
            `node ${layout.node}: the cache root ${this.root} does not exist`,
            { cause: error },
          );
        if (!isErrno(error, 'EEXIST')) throw error;
        if (!(await fsp.lstat(layout.dir)).isDirectory())
          throw Object.assign(new Error(`ENOTDIR: ${layout.dir} exists and is not a folder`), {
            code: 'ENOTDIR',
          });
        return false;
      }
    });
    if (createdFolder && this.fsync) await io(context, 'fsync of the cache root', () => fsyncDir(this.root));
    const marker: NodeMarker = {
      v: NODE_MARKER_VERSION,
      node: layout.node,
      registeredAt: new Date().toISOString(),
      registeredBy: by,
    };
    await io(context, 'writing the node marker', () =>
      writeFileAtomic({
        // Beside the marker (same file system); a name no node id or cache folder can have.
        tmpPath: path.join(layout.dir, `.${path.basename(layout.marker)}~${uniqueTag('marker')}.part`),
        finalPath: layout.marker,
        finalDir: layout.dir,
        data: serializeNodeMarker(marker),
        fsync: this.fsync,
        discard: (tmpPath) => this.discard(tmpPath),
      }),
    );
    return { marker, created: true };
  }

  /** Removes the node's marker (its cache stays); returns whether there was one. */
  async unregisterNode(node: string): Promise<boolean> {
    const layout = this.layout.node(node);
    const context: IoContext = { side: 'cache', what: `node ${layout.node}` };
    const removed = await io(context, 'removing the node marker', () => unlinkIfPresent(layout.marker));
    if (removed && this.fsync) await io(context, 'fsync of the node folder', () => fsyncDir(layout.dir));
    return removed;
  }

  /**
   * The meta of a published image whose file is there with the size its meta records, and which matches
   * `expected`. No re-hash: meta is only written after the bytes were verified.
   */
  async verifiedImage(
    node: string,
    imageId: string,
    expected?: ExpectedImage,
  ): Promise<ImageMeta | undefined> {
    const layout = this.layout.node(node);
    const id = this.layout.imageId(imageId);
    const wanted = parseExpected(expected);
    const { meta } = await this.inspect(layout, id, cacheContext(layout, id));
    return meta && matches(meta, wanted) ? meta : undefined;
  }

  /** Sub-folders of the root named like node ids (anything else in the root is ignored). */
  async listNodes(): Promise<string[]> {
    let entries;
    try {
      entries = await fsp.readdir(this.root, { withFileTypes: true });
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return [];
      throw mapIoError(error, { side: 'cache', what: `cache root ${this.root}` }, 'listing nodes');
    }
    return entries
      .filter((entry) => entry.isDirectory() && nodeIdSchema.safeParse(entry.name).success)
      .map((entry) => entry.name)
      .sort();
  }

  /** The node's verified images, by image id. */
  async listImages(node: string): Promise<ImageMeta[]> {
    const layout = this.layout.node(node);
    const names = await this.readImagesFolder(layout);
    const images: ImageMeta[] = [];
    for (const name of names.sort()) {
      if (!name.endsWith(META_SUFFIX)) continue;
      const imageId = name.slice(0, -META_SUFFIX.length);
      if (!imageIdSchema.safeParse(imageId).success) continue;
      const { meta } = await this.inspect(layout, imageId, cacheContext(layout, imageId));
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
    const layout = this.layout.node(node);
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

  /** Seeds a cache from a file outside it (demo, tests): hashed while copied, then published like a copy. */
  async importImage(
    node: string,
    imageId: string,
    fromPath: string,
    options: ImportImageOptions = {},
  ): Promise<ImageMeta> {
    const layout = this.layout.node(node);
    const id = this.layout.imageId(imageId);
    const attemptId =
      options.attemptId === undefined
        ? uniqueTag('import')
        : parseField(holderIdSchema, options.attemptId, 'attemptId');
    throwIfAborted(options.signal);
    const sourceContext: IoContext = { side: 'source', what: `import of ${fromPath}` };
    const from = await io(sourceContext, 'opening the file', () => fsp.open(fromPath, 'r'));
    try {
      const stat = await io(sourceContext, 'stat', () => from.stat());
      if (!stat.isFile()) {
        throw new ConductorError('SOURCE_MISSING', `import of ${fromPath}: not a regular file`);
      }
      const { meta } = await this.publish({
        destination: layout,
        imageId: id,
        tag: attemptId,
        from,
        sourceContext,
        expected: { size: stat.size },
        signal: options.signal,
        metaFields: { attemptId },
        describe: `import of ${fromPath} as image ${id} on node ${layout.node}`,
      });
      return meta;
    } finally {
      await this.closeQuietly(from, fromPath);
    }
  }

  /** The verified, atomic copy (README, "The copy"): see CopyImageRequest. The caller holds both locks. */
  async copyImage(request: CopyImageRequest): Promise<CopyImageOutcome> {
    const started = performance.now();
    const imageId = this.layout.imageId(request.imageId);
    const source = this.layout.node(request.source, 'source');
    const destination = this.layout.node(request.destination, 'destination');
    if (source.node === destination.node) {
      throw new InvalidFieldError('destination', 'must differ from source');
    }
    const attemptId = parseField(holderIdSchema, request.attemptId, 'attemptId');
    const requested = parseExpected(request.expected);
    const requestId =
      request.requestId === undefined
        ? undefined
        : parseField(requestIdSchema, request.requestId, 'requestId');
    const fencingToken =
      request.fencingToken === undefined
        ? undefined
        : parseField(fencingTokenSchema, request.fencingToken, 'fencingToken');
    throwIfAborted(request.signal);

    const sourceContext: IoContext = { side: 'source', what: `source node ${source.node}, image ${imageId}` };
    const destinationContext: IoContext = {
      side: 'destination',
      what: `destination node ${destination.node}, image ${imageId}`,
    };
    const sourceState = await this.inspect(source, imageId, sourceContext);
    const destinationState = await this.inspect(destination, imageId, destinationContext);

    // With no checksum in the request and no source meta (evicted since a first, successful delivery),
    // any verified image at the destination is the answer: redeliveries stay idempotent.
    const expected: ExpectedImage = {
      sha256: requested.sha256 ?? sourceState.meta?.sha256,
      size: requested.size ?? sourceState.meta?.size,
    };
    if (destinationState.meta && matches(destinationState.meta, expected)) {
      return {
        status: 'already-present',
        bytes: 0,
        sha256: destinationState.meta.sha256,
        meta: destinationState.meta,
        copyMs: 0,
        verifyMs: performance.now() - started,
      };
    }

    const sourceMeta = sourceState.meta;
    if (!sourceMeta) {
      throw new ConductorError(
        'SOURCE_MISSING',
        `no verified copy of image ${imageId} on node ${source.node}: ${sourceState.problem}`,
      );
    }
    // The source's meta was written after verifying its bytes: a different checksum there means the copy
    // could only fail, so fail before moving any bytes.
    if (requested.sha256 !== undefined && requested.sha256 !== sourceMeta.sha256) {
      throw new ConductorError(
        'CHECKSUM_MISMATCH',
        `image ${imageId} on node ${source.node} has sha256 ${sourceMeta.sha256}, the request expects ${requested.sha256}; nothing was copied`,
      );
    }
    if (requested.size !== undefined && requested.size !== sourceMeta.size) {
      throw new ConductorError(
        'SIZE_MISMATCH',
        `image ${imageId} on node ${source.node} has ${sourceMeta.size} bytes, the request expects ${requested.size}; nothing was copied`,
      );
    }

    const copyStarted = performance.now();
    const sourcePath = this.layout.imagePath(source, imageId);
    // O_NOFOLLOW: a published image is a regular file; a symlink swapped in would read outside the cache.
    const from = await io(sourceContext, 'opening the image', () =>
      fsp.open(sourcePath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW),
    );
    try {
      const stat = await io(sourceContext, 'stat of the image', () => from.stat());
      if (stat.size !== sourceMeta.size) {
        throw new ConductorError(
          'SOURCE_MISSING',
          `image ${imageId} on node ${source.node} has ${stat.size} bytes but its meta says ${sourceMeta.size}`,
        );
      }
      const total = sourceMeta.size;
      const onProgress = request.onProgress;
      const { bytes, meta } = await this.publish({
        destination,
        imageId,
        tag: attemptId,
        from,
        sourceContext,
        expected: { sha256: sourceMeta.sha256, size: sourceMeta.size },
        signal: request.signal,
        onProgress: onProgress && ((done) => onProgress(done, total)),
        beforeIrreversibleStep: request.beforeIrreversibleStep,
        metaFields: {
          source: { node: source.node, ...(requestId === undefined ? {} : { requestId }) },
          ...(fencingToken === undefined ? {} : { fencingToken }),
          attemptId,
        },
        describe: `copy of image ${imageId} from node ${source.node} to node ${destination.node}`,
      });
      return {
        status: 'copied',
        bytes,
        sha256: meta.sha256,
        meta,
        copyMs: performance.now() - copyStarted,
        verifyMs: copyStarted - started,
      };
    } finally {
      await this.closeQuietly(from, sourcePath);
    }
  }

  /**
   * The partial files in the node's tmp folder (copies and meta files being written, or left by dead
   * attempts), by image id; names that are not ours are left out. Deciding which are dead is the caller's
   * job (under the image's exclusive lock, see removeLeftoverTmp).
   */
  async listTmp(node: string): Promise<Array<{ imageId: string; path: string }>> {
    const layout = this.layout.node(node);
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
   * Removes partial copies of `imageId` on `node` (all partial copies when no id is given) and returns how
   * many. Safe for one image while holding its exclusive lock: any tmp of that image is then a dead or
   * aborted attempt's. Without an id, other images may be copying right now: pass `olderThanMs`.
   */
  async removeLeftoverTmp(
    node: string,
    imageId?: string,
    options: RemoveLeftoverTmpOptions = {},
  ): Promise<number> {
    const layout = this.layout.node(node);
    const id = imageId === undefined ? undefined : this.layout.imageId(imageId);
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
   * Records a read of the image (the cleaner evicts the least recently used). copyImage does not call it:
   * the conductor does, for the source, while it still holds the source lock; a failure there (a
   * read-only source cache, say) is worth a log line, not a failed copy.
   */
  async touchLastUsed(node: string, imageId: string): Promise<void> {
    const layout = this.layout.node(node);
    const id = this.layout.imageId(imageId);
    const context = cacheContext(layout, id);
    const meta = (await this.readMetaChecked(layout, id, context)).value;
    if (!meta) {
      throw new ConductorError('SOURCE_MISSING', `no valid meta for image ${id} on node ${layout.node}`);
    }
    await this.writeMeta(layout, { ...meta, lastUsedAt: new Date().toISOString() }, context);
  }

  /**
   * Every image id found in the node's images folder (an image file, a meta file, or both), with its meta
   * when the image is verified (file present with the size its meta records) and the bytes on disk. An
   * entry without verified meta is an orphan: a crash between the steps of a publish or a delete left it,
   * and nobody can use it as a source. The cache cleaner reads this; copies never need it.
   */
  async listEntries(node: string): Promise<CacheEntry[]> {
    const layout = this.layout.node(node);
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
    return this.readEntry(this.layout.node(node), this.layout.imageId(imageId));
  }

  private async readEntry(layout: NodeLayout, imageId: string): Promise<CacheEntry> {
    const context = cacheContext(layout, imageId);
    const read = await this.readMetaChecked(layout, imageId, context);
    const meta = read.value;
    const stat = await this.lstatImage(layout, imageId, context);
    const file = stat?.isFile() ? stat : undefined;
    const verified = meta !== undefined && file !== undefined && file.size === meta.size;
    return {
      imageId,
      ...(verified ? { meta } : { problem: entryProblem(read, stat, meta) }),
      bytes: file?.size ?? 0,
      ...(file ? { modifiedMs: file.mtimeMs } : {}),
    };
  }

  /**
   * Deletes a published image. The caller holds the image's EXCLUSIVE lock (the cache cleaner does), so no
   * copy reads or writes it meanwhile. The meta goes first (and that is made durable), then the image,
   * then any partial copy of it: a crash in between leaves an image without meta, which no copy trusts as
   * a source or as already present, and which the next clean removes as an orphan. Any part already
   * missing is fine (an interrupted earlier delete); a folder or other non-file at the image path is left
   * alone and reported as an error.
   */
  async deleteImage(node: string, imageId: string): Promise<DeletedImage> {
    const layout = this.layout.node(node);
    const id = this.layout.imageId(imageId);
    const context = cacheContext(layout, id);
    const imagePath = this.layout.imagePath(layout, id);
    const stat = await this.lstatImage(layout, id, context);
    if (stat && !stat.isFile()) {
      throw new ConductorError(
        'IO_ERROR',
        `node ${layout.node}, image ${id}: the image path is not a regular file; not deleted`,
      );
    }
    const removedMeta = await io(context, 'removing the meta file', () =>
      unlinkIfPresent(this.layout.metaPath(layout, id)),
    );
    if (removedMeta && this.fsync)
      await io(context, 'fsync of the images folder', () => fsyncDir(layout.images));
    const removedImage = stat
      ? await io(context, 'removing the image', () => unlinkIfPresent(imagePath))
      : false;
    if (removedImage && this.fsync)
      await io(context, 'fsync of the images folder', () => fsyncDir(layout.images));
    const tmpRemoved = await this.removeLeftoverTmp(layout.node, id);
    return { removedMeta, removedImage, bytes: removedImage ? stat!.size : 0, tmpRemoved };
  }

  /** True while `<node>/pinned/<imageId>` exists: the cache cleaner never deletes a pinned image. */
  async isPinned(node: string, imageId: string): Promise<boolean> {
    const layout = this.layout.node(node);
    const id = this.layout.imageId(imageId);
    return this.entryExists(this.layout.pinPath(layout, id), cacheContext(layout, id), 'checking the pin');
  }

  /** The node's pinned image ids (names in `pinned/` that are not valid image ids are ignored). */
  async listPinned(node: string): Promise<Set<string>> {
    const layout = this.layout.node(node);
    try {
      const names = await fsp.readdir(layout.pinned);
      return new Set(names.filter((name) => imageIdSchema.safeParse(name).success));
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return new Set();
      throw mapIoError(error, { side: 'cache', what: `node ${layout.node}, pinned folder` }, 'listing pins');
    }
  }

  /** Creates the pin marker `<node>/pinned/<imageId>` (idempotent). The image need not be cached yet. */
  async pin(node: string, imageId: string): Promise<void> {
    const layout = this.layout.node(node);
    const id = this.layout.imageId(imageId);
    const context = cacheContext(layout, id);
    await io(context, 'creating the pin', async () => {
      await ensureNodeFolder(layout, layout.pinned);
      const handle = await fsp.open(this.layout.pinPath(layout, id), 'a', 0o644);
      await handle.close();
      if (this.fsync) await fsyncDir(layout.pinned);
    });
  }

  /** Removes the pin marker; returns whether there was one. */
  async unpin(node: string, imageId: string): Promise<boolean> {
    const layout = this.layout.node(node);
    const id = this.layout.imageId(imageId);
    const context = cacheContext(layout, id);
    const removed = await io(context, 'removing the pin', async () => {
      const pin = this.layout.pinPath(layout, id);
      const stat = await fsp.lstat(pin).catch((error: unknown) => {
        if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
        throw error;
      });
      if (!stat) return false;
      await fsp.rm(pin, { recursive: stat.isDirectory(), force: true });
      return true;
    });
    if (removed && this.fsync) await io(context, 'fsync of the pinned folder', () => fsyncDir(layout.pinned));
    return removed;
  }

  /** True while the operator's marker `<node>/draining` exists: conductors do not pick the node as a source. */
  async isDraining(node: string): Promise<boolean> {
    const layout = this.layout.node(node);
    return this.entryExists(
      layout.draining,
      { side: 'cache', what: `node ${layout.node}` },
      'checking the draining marker',
    );
  }

  private async entryExists(target: string, context: IoContext, action: string): Promise<boolean> {
    try {
      await fsp.lstat(target);
      return true;
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return false;
      throw mapIoError(error, context, action);
    }
  }

  private async lstatImage(layout: NodeLayout, imageId: string, context: IoContext) {
    try {
      return await fsp.lstat(this.layout.imagePath(layout, imageId));
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

  private async inspect(layout: NodeLayout, imageId: string, context: IoContext): Promise<Inspection> {
    const read = await this.readMetaChecked(layout, imageId, context);
    const meta = read.value;
    if (!meta) return { problem: read.missing ? 'meta file missing' : `meta file invalid: ${read.invalid}` };
    let stat;
    try {
      stat = await fsp.lstat(this.layout.imagePath(layout, imageId));
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return { problem: 'image file missing' };
      throw mapIoError(error, context, 'stat of the image');
    }
    if (!stat.isFile()) return { problem: 'image path is not a regular file' };
    if (stat.size !== meta.size) {
      return { problem: `image file has ${stat.size} bytes but its meta says ${meta.size}` };
    }
    return { meta };
  }

  /** Streams `from` into a fresh tmp file, verifies, publishes by rename, then writes the meta. */
  private async publish(options: {
    destination: NodeLayout;
    imageId: string;
    tag: string;
    from: FileHandle;
    sourceContext: IoContext;
    expected: ExpectedImage;
    signal?: AbortSignal;
    onProgress?: (bytesDone: number) => void;
    beforeIrreversibleStep?: (step: IrreversibleStep) => Promise<void> | void;
    metaFields: Pick<ImageMeta, 'source' | 'fencingToken' | 'attemptId'>;
    describe: string;
  }): Promise<{ bytes: number; meta: ImageMeta }> {
    const { destination, imageId, expected, signal, describe } = options;
    const context: IoContext = {
      side: 'destination',
      what: `destination node ${destination.node}, image ${imageId}`,
    };
    // Never mkdir -p: a node's folder is created by its registration only, not by a copy to it.
    await io(context, 'creating the cache folders', async () => {
      await ensureNodeFolder(destination, destination.images);
      await ensureNodeFolder(destination, destination.tmp);
    });
    const tmpPath = this.layout.tmpPath(destination, imageId, options.tag);
    const finalPath = this.layout.imagePath(destination, imageId);
    const metaPath = this.layout.metaPath(destination, imageId);

    let to: FileHandle;
    try {
      to = await fsp.open(tmpPath, 'wx', 0o644);
    } catch (error) {
      if (isErrno(error, 'EEXIST')) {
        throw new ConductorError(
          'IO_ERROR',
          `${describe}: a partial copy of attempt ${options.tag} already exists; attempt ids must be unique (removeLeftoverTmp clears dead attempts)`,
        );
      }
      throw mapIoError(error, context, 'creating the partial copy');
    }

    let bytes: number;
    let sha256: string;
    let open = true;
    let renamed = false;
    try {
      ({ bytes, sha256 } = await streamCopy({
        from: options.from,
        to,
        maxBytes: expected.size,
        signal,
        onProgress: options.onProgress,
        readError: (error) => mapIoError(error, options.sourceContext, 'reading'),
        writeError: (error) => mapIoError(error, context, 'writing the partial copy'),
        describe,
      }));
      if (this.fsync) await io(context, 'fsync of the partial copy', () => to.sync());
      open = false;
      await io(context, 'closing the partial copy', () => to.close());

      if (expected.size !== undefined && bytes !== expected.size) {
        throw new ConductorError(
          'SIZE_MISMATCH',
          `${describe}: ${bytes} bytes arrived, expected ${expected.size}; nothing was published`,
        );
      }
      if (expected.sha256 !== undefined && sha256 !== expected.sha256) {
        throw new ConductorError(
          'CHECKSUM_MISMATCH',
          `${describe}: the bytes have sha256 ${sha256}, expected ${expected.sha256}; nothing was published`,
        );
      }
      throwIfAborted(signal);
      await options.beforeIrreversibleStep?.('publish');
      throwIfAborted(signal);

      // An older image under this id loses its meta before the rename: a crash in between then leaves an
      // unverified image (copied again next time), never new bytes described by the old meta.
      const hadMeta = await io(context, 'removing the old meta', () =>
        fsp.unlink(metaPath).then(
          () => true,
          (error: unknown) => {
            if (isErrno(error, 'ENOENT')) return false;
            throw error;
          },
        ),
      );
      if (hadMeta && this.fsync) {
        await io(context, 'fsync of the images folder', () => fsyncDir(destination.images));
      }
      await io(context, 'publishing (rename)', () => fsp.rename(tmpPath, finalPath));
      renamed = true;
    } catch (error) {
      if (open) await this.closeQuietly(to, tmpPath);
      if (!renamed) await this.discard(tmpPath);
      throw error;
    }

    // Published: from here an abort no longer stops us, an image without meta would only be copied again.
    if (this.fsync) await io(context, 'fsync of the images folder', () => fsyncDir(destination.images));
    const now = new Date().toISOString();
    const meta: ImageMeta = {
      v: 1,
      imageId,
      size: bytes,
      sha256,
      createdAt: now,
      lastUsedAt: now,
      ...options.metaFields,
    };
    await options.beforeIrreversibleStep?.('meta');
    await this.writeMeta(destination, meta, context);
    return { bytes, meta };
  }

  /** Reads a meta file; an invalid one is reported (once per file version) with the field at fault. */
  private async readMetaChecked(
    layout: NodeLayout,
    imageId: string,
    context: IoContext,
  ): Promise<JsonFileRead<ImageMeta>> {
    const metaPath = this.layout.metaPath(layout, imageId);
    const read = await io(context, 'reading the meta file', () => readMetaFile(metaPath, imageId));
    if (read.invalid !== undefined)
      this.reportInvalid(
        metaPath,
        read,
        `image ${imageId} on node ${layout.node} is not used (as a source or as already present) until it is copied again`,
      );
    return read;
  }

  private reportInvalid(file: string, read: { invalid: string; mtimeMs: number }, consequence: string): void {
    if (this.reported.first(file, read.mtimeMs))
      this.onWarning(`invalid file ${file}: ${read.invalid}; ${consequence}`);
  }

  private async writeMeta(layout: NodeLayout, meta: ImageMeta, context: IoContext): Promise<void> {
    await io(context, 'writing the meta file', () =>
      writeFileAtomic({
        tmpPath: this.layout.tmpPath(layout, meta.imageId, uniqueTag('meta')),
        finalPath: this.layout.metaPath(layout, meta.imageId),
        finalDir: layout.images,
        data: serializeMeta(meta),
        fsync: this.fsync,
        discard: (tmpPath) => this.discard(tmpPath),
      }),
    );
  }

  /** Removes a partial file after a failure; never throws, so the failure being reported stays the one. */
  private async discard(file: string): Promise<void> {
    try {
      await fsp.rm(file, { force: true });
    } catch (error) {
      this.onWarning(`could not remove the partial file ${file} (removeLeftoverTmp will)`, error);
    }
  }

  private async closeQuietly(handle: FileHandle, file: string): Promise<void> {
    try {
      await handle.close();
    } catch (error) {
      this.onWarning(`could not close ${file}`, error);
    }
  }
}

/** unlink that answers false when there was nothing to remove. */
async function unlinkIfPresent(file: string): Promise<boolean> {
  try {
    await fsp.unlink(file);
    return true;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return false;
    throw error;
  }
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

function cacheContext(layout: NodeLayout, imageId: string): IoContext {
  return { side: 'cache', what: `node ${layout.node}, image ${imageId}` };
}

function parseExpected(expected: ExpectedImage | undefined): ExpectedImage {
  if (expected === undefined || expected === null) return {};
  return {
    sha256: expected.sha256 === undefined ? undefined : parseField(sha256Schema, expected.sha256, 'sha256'),
    size: expected.size === undefined ? undefined : parseField(sizeSchema, expected.size, 'size'),
  };
}

function matches(meta: ImageMeta, expected: ExpectedImage): boolean {
  return (
    (expected.sha256 === undefined || meta.sha256 === expected.sha256) &&
    (expected.size === undefined || meta.size === expected.size)
  );
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
