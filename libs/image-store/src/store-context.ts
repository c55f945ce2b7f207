import { type Stats, constants as fsConstants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { z } from 'zod';
import { byteCountSchema, parseField, sha256Schema as contractSha256Schema, errorText } from '@app/contracts';
import { PartialReads } from './partial-reads';
import { SwarmBoard } from './swarm-board';
import { SWARM_POLL_MS, SWARM_STALE_MS } from './swarm-record';
import { SharedReads } from './shared-reads';
import { CacheLayout, type NodeLayout } from './cache-layout';
import { CopyWorkerPool } from './copy-worker-pool';
import { uniqueTag, writeFileAtomic } from './durable-fs';
import { type IoContext, io, isErrno, mapIoError } from './fs-errors';
import { type StreamCopier, inlineCopier } from './image-copier';
import { type ImageMeta, readMetaFile, serializeMeta } from './image-meta';
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
  /** Bytes between two checkpoints of a resumable partial copy (default RESUME_CHECKPOINT_BYTES). */
  resumeCheckpointBytes?: number;
  /**
   * Worker threads that stream, hash and write copies (CopyWorkerPool), started on first use; 0 or unset:
   * on the calling thread. The conductor sets HASH_WORKERS.
   */
  copyWorkers?: number;
  /**
   * A record of a copy in progress not rewritten for this long is a dead copy's (swarm-record.ts; default
   * SWARM_STALE_MS). The conductor sets LOCK_STALE_MS: the same time by which it judges a dead holder.
   */
  swarmStaleMs?: number;
  /**
   * Other conductors' swarm records read within this long are shared by this process's copies (default
   * SWARM_POLL_MS, one look); specs that rewrite a record and read it at once set 0.
   */
  swarmReadShareMs?: number;
  /**
   * Open other copies' partial files (a copy in progress read from, a dead attempt's partial taken over)
   * with O_DIRECT, past this client's page cache. Needed on ceph-fuse: a buffered read of a file another
   * client is writing leaves pages here (read-ahead included) that its later writes do not always
   * invalidate, so a reader here went on seeing old bytes in the published image (docs/copies.md). Only
   * where O_DIRECT asks nothing of alignment (FUSE passes it on): a local disk refuses unaligned reads.
   */
  uncachedPartialReads?: boolean;
}

/** The flags another copy's partial file is opened with for reading: O_DIRECT when `uncached`. */
export function partialOpenFlags(uncached: boolean): number {
  return fsConstants.O_RDONLY | (uncached ? fsConstants.O_DIRECT : 0);
}

/** ceph-fuse (docs/copies.md): the file-system type, as /proc/self/mountinfo names it, whose partials are read uncached. */
export function partialReadsBypassCache(fsType: string | undefined): boolean {
  return fsType === 'fuse.ceph-fuse';
}

/** What an image must be; omitted fields are not checked. sha256 is 64 hex digits (any case). */
export interface ExpectedImage {
  sha256?: string;
  size?: number;
}

/** Why an image is not verified, or its meta when it is. */
export type Inspection = { meta: ImageMeta; problem?: undefined } | { meta?: undefined; problem: string };

// One source of truth for the wire-level rules; this API also accepts upper-case checksums.
const sha256Schema = z.preprocess((s) => (typeof s === 'string' ? s.toLowerCase() : s), contractSha256Schema);
export const sizeSchema = byteCountSchema;
const checkpointBytesSchema = byteCountSchema.min(1, 'must be at least 1');

/**
 * How often a copy makes its progress resumable (fsync, then its record names the bytes so far and their
 * sha256): a resumed copy re-reads at most this much from its source again.
 */
export const DEFAULT_RESUME_CHECKPOINT_BYTES = 32 * 1024 * 1024;

/**
 * What every part of the store shares (not exported from the lib): the layout, the fsync switch, and the
 * reading and writing of meta files, so that a broken file is reported once per version whichever part
 * of the store reads it.
 */
/** A removal waits at most this long for reads of the partial in this process (one piece takes less). */
const PARTIAL_READ_WAIT_MS = 10_000;

export class StoreContext {
  readonly layout: CacheLayout;
  readonly root: string;
  readonly fsync: boolean;
  readonly resumeCheckpointBytes: number;
  readonly swarmStaleMs: number;
  private readonly partialOpenFlags: number;
  readonly onWarning: (message: string, error?: unknown) => void;
  readonly copier: StreamCopier;
  /** Reads of other copies' partial files open in this process: a partial is removed once they end. */
  readonly partialReads = new PartialReads();
  /** This process's copies in progress, for the copies of the same image here (swarm-board.ts). */
  readonly swarmBoard = new SwarmBoard();
  /**
   * Other conductors' swarm records and folder listings, read once per look for all of this process's
   * copies: 16 copies of a fan-out with 16 remote peers each re-read 1,024 records a second without it.
   */
  readonly swarmReads: SharedReads;
  private readonly reported = new OncePerFileVersion();

  /** `copier` replaces the one `copyWorkers` chooses (specs bring a pool whose worker crashes). */
  constructor(options: ImageStoreOptions, copier?: StreamCopier) {
    this.layout = new CacheLayout(options.root);
    this.root = this.layout.root;
    this.fsync = options.fsync ?? true;
    this.swarmStaleMs = options.swarmStaleMs ?? SWARM_STALE_MS;
    this.swarmReads = new SharedReads(options.swarmReadShareMs ?? SWARM_POLL_MS);
    this.partialOpenFlags = partialOpenFlags(options.uncachedPartialReads ?? false);
    this.resumeCheckpointBytes =
      options.resumeCheckpointBytes === undefined
        ? DEFAULT_RESUME_CHECKPOINT_BYTES
        : parseField(checkpointBytesSchema, options.resumeCheckpointBytes, 'resumeCheckpointBytes');
    this.copier =
      copier ?? (options.copyWorkers ? new CopyWorkerPool({ size: options.copyWorkers }) : inlineCopier);
    this.onWarning =
      options.onWarning ??
      ((message, error) =>
        process.emitWarning(
          error === undefined ? message : `${message}: ${errorText(error)}`,
          'ImageStoreWarning',
        ));
  }

  /** Whether the image's meta is valid and its file is there with the size the meta records. */
  async inspect(layout: NodeLayout, imageId: string, context: IoContext): Promise<Inspection> {
    const read = await this.readMetaChecked(layout, imageId, context);
    const meta = read.value;
    if (!meta) return { problem: read.missing ? 'meta file missing' : `meta file invalid: ${read.invalid}` };
    const stat = await this.imageStat(layout, imageId, context);
    if (!stat) return { problem: 'image file missing' };
    if (!stat.isFile()) return { problem: 'image path is not a regular file' };
    if (stat.size !== meta.size) {
      return { problem: `image file has ${stat.size} bytes but its meta says ${meta.size}` };
    }
    return { meta };
  }

  /** lstat of the image's path; undefined when nothing is there (or the node has no images folder). */
  async imageStat(layout: NodeLayout, imageId: string, context: IoContext): Promise<Stats | undefined> {
    try {
      return await fsp.lstat(this.layout.imagePath(layout, imageId));
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
      throw mapIoError(error, context, 'stat of the image');
    }
  }

  /** Reads a meta file; an invalid one is reported (once per file version) with the field at fault. */
  async readMetaChecked(
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

  reportInvalid(file: string, read: { invalid: string; mtimeMs: number }, consequence: string): void {
    this.reportOnce(file, read.mtimeMs, `invalid file ${file}: ${read.invalid}; ${consequence}`);
  }

  /** Warns once per `file` and `version` (an mtime, or what else tells versions of it apart). */
  reportOnce(file: string, version: number, message: string): void {
    if (this.reported.first(file, version)) this.onWarning(message);
  }

  async writeMeta(layout: NodeLayout, meta: ImageMeta, context: IoContext): Promise<void> {
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

  /**
   * Removes a partial file after a failure, once this process's reads of it ended (partial-reads.ts);
   * never throws, so the failure being reported stays the one.
   */
  async discard(file: string): Promise<void> {
    await this.partialReads.idle(file, PARTIAL_READ_WAIT_MS);
    try {
      await fsp.rm(file, { force: true });
    } catch (error) {
      this.onWarning(`could not remove the partial file ${file} (removeLeftoverTmp will)`, error);
    }
  }

  /** Opens another copy's partial file for reading (uncached where `uncachedPartialReads` says). */
  openOthersPartial(file: string): Promise<FileHandle> {
    return fsp.open(file, this.partialOpenFlags);
  }

  async closeQuietly(handle: FileHandle, file: string): Promise<void> {
    try {
      await handle.close();
    } catch (error) {
      this.onWarning(`could not close ${file}`, error);
    }
  }

  async entryExists(target: string, context: IoContext, action: string): Promise<boolean> {
    try {
      await fsp.lstat(target);
      return true;
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return false;
      throw mapIoError(error, context, action);
    }
  }
}

export function cacheContext(layout: NodeLayout, imageId: string): IoContext {
  return { side: 'cache', what: `node ${layout.node}, image ${imageId}` };
}

export function parseExpected(expected: ExpectedImage | undefined): ExpectedImage {
  if (expected === undefined || expected === null) return {};
  return {
    sha256: expected.sha256 === undefined ? undefined : parseField(sha256Schema, expected.sha256, 'sha256'),
    size: expected.size === undefined ? undefined : parseField(sizeSchema, expected.size, 'size'),
  };
}

export function matches(meta: ImageMeta, expected: ExpectedImage): boolean {
  return (
    (expected.sha256 === undefined || meta.sha256 === expected.sha256) &&
    (expected.size === undefined || meta.size === expected.size)
  );
}

/** unlink that answers false when there was nothing to remove. */
export async function unlinkIfPresent(file: string): Promise<boolean> {
  try {
    await fsp.unlink(file);
    return true;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return false;
    throw error;
  }
}
