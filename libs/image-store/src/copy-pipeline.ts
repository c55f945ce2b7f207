import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import {
  ReasonError,
  InvalidFieldError,
  byteCountSchema,
  holderIdSchema,
  parseField,
  requestIdSchema,
} from '@app/contracts';
import { ensureNodeFolder } from './durable-fs';
import { type IoContext, io } from './fs-errors';
import { type StreamPace, openPublishedImage, throwIfAborted } from './image-copier';
import type { ImageMeta } from './image-meta';
import { type HelperHolder, openHelpers, readErrorOf, sourcePieceList } from './helper-holders';
import { type SwarmRequest, openSwarm } from './swarm-holders';
import { type PieceListRead, readPieceList } from './piece-list-file';
import { type IrreversibleStep, publishImage } from './publish';
import { type ExpectedImage, type StoreContext, cacheContext, matches, parseExpected } from './store-context';

export interface CopyImageRequest {
  imageId: string;
  source: string;
  destination: string;
  /** Checked instead of the source's meta when given (docs/copies.md, "The copy"). */
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
  /**
   * Continue a dead attempt's partial copy of the same image (same sha256 and size, its recorded prefix
   * re-hashed) instead of starting from zero, and remove every other partial of the image. Only for a
   * caller holding the destination's exclusive lock (then every other partial is a dead attempt's).
   */
  resume?: boolean;
  /** Bandwidth caps of the source's reads and the destination's writes. */
  pace?: StreamPace;
  /**
   * More verified holders of the image to read other pieces from at once (piece-copy.ts), each under a
   * shared lock the caller holds. Used only with a piece list of the source that matches its meta; a
   * helper whose image or list is not the same is left out. See CopyImageOutcome.readFrom.
   */
  helpers?: HelperHolder[];
  /** A holder dropped during a copy from several (its read or lock failed, a piece had another sha256). */
  onHolderDropped?: (node: string, why: string, routine?: boolean) => void;
  /**
   * Also read verified pieces from other copies in progress of the image, and announce this copy's
   * (docs/copies.md, "Reading from copies in progress"). Used only with a piece list of the source that
   * matches its meta; without one the copy reads as if this were absent.
   */
  swarm?: SwarmRequest;
}

export interface CopyImageOutcome {
  status: 'copied' | 'already-present';
  /** Bytes copied by this call: 0 when already present (the image's size is meta.size). */
  bytes: number;
  /** Bytes taken over from a dead attempt's partial copy (re-hashed, not read from the source). */
  resumedBytes: number;
  /** sha256 of the image at the destination (meta.sha256). */
  sha256: string;
  /** The destination's meta. */
  meta: ImageMeta;
  /** Streaming, hashing, fsync and publishing; 0 when already present. */
  copyMs: number;
  /** Checking the source and the destination before copying (the copy itself hashes inline). */
  verifyMs: number;
  /** Every node the bytes were read from when helpers were used (the source first); absent otherwise. */
  readFrom?: string[];
}

const fencingTokenSchema = byteCountSchema;

/**
 * The copy pipeline: the verified, atomic copy of an image from one node's cache to another's, and the
 * checks a copy is decided on (is a verified image there, record a read). It knows nothing of locks: the
 * caller holds the source's shared and the destination's exclusive lock around copyImage.
 */
export class CopyPipeline {
  constructor(private readonly store: StoreContext) {}

  /**
   * The meta of a published image whose file is there with the size its meta records, and which matches
   * `expected`. No re-hash: meta is only written after the bytes were verified.
   */
  async verifiedImage(
    node: string,
    imageId: string,
    expected?: ExpectedImage,
  ): Promise<ImageMeta | undefined> {
    const layout = this.store.layout.node(node);
    const id = this.store.layout.imageId(imageId);
    const wanted = parseExpected(expected);
    const { meta } = await this.store.inspect(layout, id, cacheContext(layout, id));
    return meta && matches(meta, wanted) ? meta : undefined;
  }

  /**
   * The piece list of a verified image (docs/copies.md, "Piece lists"), only when it describes the sha256
   * and size of the image's meta; else why not (the image is not verified, or its list is missing, invalid
   * or another image's: each logged once per image version). Never a reason to fail a copy: without a list
   * an image is shared as a whole only. The caller holds the image's shared or exclusive lock.
   */
  async readPieceList(node: string, imageId: string): Promise<PieceListRead> {
    const layout = this.store.layout.node(node);
    return readPieceList(this.store, layout, this.store.layout.imageId(imageId));
  }

  /** The verified, atomic copy (docs/copies.md, "The copy"): see CopyImageRequest. The caller holds both locks. */
  async copyImage(request: CopyImageRequest): Promise<CopyImageOutcome> {
    const started = performance.now();
    const imageId = this.store.layout.imageId(request.imageId);
    const source = this.store.layout.node(request.source, 'source');
    const destination = this.store.layout.node(request.destination, 'destination');
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
    const sourceState = await this.store.inspect(source, imageId, sourceContext);
    const destinationState = await this.store.inspect(destination, imageId, destinationContext);

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
        resumedBytes: 0,
        sha256: destinationState.meta.sha256,
        meta: destinationState.meta,
        copyMs: 0,
        verifyMs: performance.now() - started,
      };
    }

    const sourceMeta = sourceState.meta;
    if (!sourceMeta) {
      throw new ReasonError(
        'SOURCE_MISSING',
        `no verified copy of image ${imageId} on node ${source.node}: ${sourceState.problem}`,
      );
    }
    // The source's meta was written after verifying its bytes: a different checksum there means the copy
    // could only fail, so fail before moving any bytes.
    if (requested.sha256 !== undefined && requested.sha256 !== sourceMeta.sha256) {
      throw new ReasonError(
        'CHECKSUM_MISMATCH',
        `image ${imageId} on node ${source.node} has sha256 ${sourceMeta.sha256}, the request expects ${requested.sha256}; nothing was copied`,
      );
    }
    if (requested.size !== undefined && requested.size !== sourceMeta.size) {
      throw new ReasonError(
        'SIZE_MISMATCH',
        `image ${imageId} on node ${source.node} has ${sourceMeta.size} bytes, the request expects ${requested.size}; nothing was copied`,
      );
    }

    const copyStarted = performance.now();
    const sourcePath = this.store.layout.imagePath(source, imageId);
    const from = await io(sourceContext, 'opening the image', () => openPublishedImage(sourcePath));
    const helperFiles: Array<[FileHandle, string]> = [];
    try {
      const stat = await io(sourceContext, 'stat of the image', () => from.stat());
      if (stat.size !== sourceMeta.size) {
        throw new ReasonError(
          'SOURCE_MISSING',
          `image ${imageId} on node ${source.node} has ${stat.size} bytes but its meta says ${sourceMeta.size}`,
        );
      }
      const total = sourceMeta.size;
      const onProgress = request.onProgress;
      const helpers = await openHelpers(this.store, request, source.node, imageId, sourceMeta, helperFiles);
      const swarmList =
        request.swarm &&
        (helpers?.list ?? (await sourcePieceList(this.store, source.node, imageId, sourceMeta)));
      const pieces = helpers ?? (swarmList ? { holders: [], list: swarmList } : undefined);
      const { bytes, meta, resumedBytes } = await publishImage(this.store, {
        destination,
        imageId,
        tag: attemptId,
        from: pieces
          ? {
              holders: [
                { node: source.node, file: from, pace: request.pace, readError: readErrorOf(sourceContext) },
                ...pieces.holders,
              ],
              list: pieces.list,
              onDropped: request.onHolderDropped,
              ...(request.swarm && swarmList
                ? {
                    swarm: (to: FileHandle) =>
                      openSwarm(
                        this.store,
                        request.swarm!,
                        {
                          imageId,
                          destination: destination.node,
                          verified: [source.node, ...pieces.holders.map((h) => h.node)],
                          attemptId,
                          list: swarmList,
                        },
                        to,
                      ),
                  }
                : {}),
            }
          : { file: from },
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
        resumable: { sourceNode: source.node, resume: request.resume ?? false },
        ...(request.pace ? { pace: request.pace } : {}),
      });
      return {
        status: 'copied',
        bytes: bytes - resumedBytes,
        resumedBytes,
        sha256: meta.sha256,
        meta,
        copyMs: performance.now() - copyStarted,
        verifyMs: copyStarted - started,
        ...(helpers ? { readFrom: [source.node, ...helpers.holders.map((h) => h.node)] } : {}),
      };
    } finally {
      await this.store.closeQuietly(from, sourcePath);
      for (const [file, where] of helperFiles) await this.store.closeQuietly(file, where);
    }
  }

  /**
   * Records a read of the image (the cleaner evicts the least recently used). copyImage does not call it:
   * the conductor does, for the source, while it still holds the source lock; a failure there (a
   * read-only source cache, say) is worth a log line, not a failed copy.
   *
   * The meta is never rewritten for this: a file replaced while another copy has it open is kept by sshfs
   * and NFS under a hidden name (`.fuse_hidden*`, `.nfs*`), and a rewrite delayed by a partition could land
   * over a newer image's meta. Setting the mtime of `used/<imageId>` replaces nothing, and done late it can
   * only make an image look used more recently (kept longer).
   */
  async touchLastUsed(node: string, imageId: string): Promise<void> {
    const layout = this.store.layout.node(node);
    const id = this.store.layout.imageId(imageId);
    const context = cacheContext(layout, id);
    const meta = (await this.store.readMetaChecked(layout, id, context)).value;
    if (!meta) {
      throw new ReasonError('SOURCE_MISSING', `no valid meta for image ${id} on node ${layout.node}`);
    }
    const marker = this.store.layout.usedPath(layout, id);
    await io(context, 'recording the last use', async () => {
      await ensureNodeFolder(layout, layout.used);
      await (await fsp.open(marker, 'a')).close();
      const now = new Date();
      await fsp.utimes(marker, now, now);
    });
  }
}
