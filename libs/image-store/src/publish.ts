import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { ReasonError } from '@app/contracts';
import type { NodeLayout } from './cache-layout';
import { ensureNodeFolder, fsyncDir } from './durable-fs';
import { type IoContext, io, isErrno, mapIoError } from './fs-errors';
import { PrefixMismatchError, type StreamPace, chunkCopy, throwIfAborted } from './image-copier';
import type { ImageMeta } from './image-meta';
import { PartialCopy, type PartialStart } from './partial-copy';
import { type PieceHolder, type SwarmOptions, copyPieces } from './piece-copy';
import type { PieceList } from './piece-list';
import { PIECE_BYTES, pieceBytesFor } from './piece-list';
import { recordPieceList } from './piece-list-file';
import type { ExpectedImage, StoreContext } from './store-context';

export type IrreversibleStep = 'publish' | 'meta';

/**
 * Where the bytes come from: a file read by position (a copy, a local import), several verified holders
 * read piece by piece against their list (piece-copy.ts), or a stream (a download).
 */
export type PublishSource =
  | { file: FileHandle }
  | {
      holders: PieceHolder[];
      list: PieceList;
      onDropped?: (node: string, why: string, routine?: boolean) => void;
      /** Also read from copies in progress, and announce this one's pieces (swarm-holders.ts). */
      swarm?: (to: FileHandle) => { options: SwarmOptions; close: () => Promise<void> };
    }
  | { chunks: AsyncIterable<Uint8Array> };

/**
 * The publish step a copy and an import share: streams `from` into `tmp/<imageId>~<tag>.part` (fresh, or a
 * dead attempt's partial re-verified and continued: partial-copy.ts), hashing the whole file and each of
 * its pieces, fsyncs, verifies size and sha256 of the whole file, lets the caller check before each
 * irreversible step, publishes by rename, writes the piece list (piece-list-file.ts), then the meta.
 */
export async function publishImage(
  store: StoreContext,
  options: {
    destination: NodeLayout;
    imageId: string;
    tag: string;
    from: PublishSource;
    sourceContext: IoContext;
    expected: ExpectedImage;
    signal?: AbortSignal;
    onProgress?: (bytesDone: number) => void;
    beforeIrreversibleStep?: (step: IrreversibleStep) => Promise<void> | void;
    metaFields: Pick<ImageMeta, 'source' | 'fencingToken' | 'attemptId'>;
    describe: string;
    /** Record the partial so that a later holder can resume it, and (`resume`) resume a dead attempt's. */
    resumable?: { sourceNode?: string; resume: boolean };
    pace?: StreamPace;
  },
): Promise<{ bytes: number; meta: ImageMeta; resumedBytes: number }> {
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
  const finalPath = store.layout.imagePath(destination, imageId);
  const metaPath = store.layout.metaPath(destination, imageId);
  // A partial is resumable only when its record can say which image it belongs to: sha256 and size.
  const resumable =
    options.resumable && expected.sha256 !== undefined && expected.size !== undefined
      ? { sha256: expected.sha256, size: expected.size }
      : undefined;
  const partial = resumable
    ? new PartialCopy(
        store,
        destination,
        imageId,
        options.tag,
        resumable,
        options.resumable?.sourceNode,
        context,
      )
    : undefined;
  const tmpPath = partial?.partialPath ?? store.layout.tmpPath(destination, imageId, options.tag);

  let to: FileHandle;
  let start: PartialStart | undefined;
  if (partial) {
    start = await partial.start(options.resumable?.resume ?? false);
    to = start.handle;
  } else {
    try {
      to = await fsp.open(tmpPath, 'wx', 0o644);
    } catch (error) {
      if (isErrno(error, 'EEXIST')) {
        throw new ReasonError(
          'IO_ERROR',
          `${describe}: a partial copy of attempt ${options.tag} already exists; attempt ids must be unique (removeLeftoverTmp clears dead attempts)`,
        );
      }
      throw mapIoError(error, context, 'creating the partial copy');
    }
  }

  let bytes: number;
  let sha256: string;
  let pieces: string[] | undefined;
  // An image known to need more pieces than a list may hold gets none: its pieces are not even hashed.
  const pieceBytes = pieceBytesFor(expected.size);
  let open = true;
  let renamed = false;
  // A copy that shares pieces: its record (swarm-holders.ts), closed once the copy is over.
  let swarm: { options: SwarmOptions; close: () => Promise<void> } | undefined;
  try {
    const writeError = (error: unknown) => mapIoError(error, context, 'writing the partial copy');
    const resumeFrom = (resumeAt: PartialStart | undefined) =>
      resumeAt && resumeAt.bytes > 0
        ? { start: { bytes: resumeAt.bytes, sha256: resumeAt.prefixSha256! } }
        : {};
    const checkpointOf = (recorded: PartialCopy | undefined) =>
      recorded
        ? {
            checkpoint: {
              everyBytes: store.resumeCheckpointBytes,
              save: (done: number, prefixSha256: string) => recorded.checkpoint(to, done, prefixSha256),
            },
          }
        : {};
    const { from } = options;
    // Only files resume (one, or several holders'): an origin's chunk stream always starts from its first
    // byte. A file source runs on the store's copier (a copy worker in the conductor); holders' pieces and a
    // chunk stream arrive on this thread and are written and hashed here.
    const copyFile = (file: FileHandle, resumeAt: PartialStart | undefined) =>
      store.copier.copy({
        from: file,
        to,
        maxBytes: expected.size,
        signal,
        onProgress: options.onProgress,
        readError: (error) => mapIoError(error, options.sourceContext, 'reading'),
        writeError,
        describe,
        ...resumeFrom(resumeAt),
        ...checkpointOf(partial),
        ...(options.pace ? { pace: options.pace } : {}),
        ...(pieceBytes === undefined ? {} : { pieceBytes }),
      });
    const copyHolders = async (
      { swarm: openSwarm, ...holders }: Extract<PublishSource, { holders: unknown }>,
      resumeAt: PartialStart | undefined,
    ) => {
      // A fresh record per pass: a restart from zero must not announce the pieces it truncated.
      await swarm?.close();
      swarm = openSwarm?.(to);
      return copyPieces({
        ...holders,
        to,
        signal,
        onProgress: options.onProgress,
        writeError,
        describe,
        ...resumeFrom(resumeAt),
        ...checkpointOf(partial),
        ...(swarm ? { swarm: swarm.options } : {}),
      });
    };
    ({ bytes, sha256, pieces } =
      'file' in from || 'holders' in from
        ? await ('file' in from ? copyFile(from.file, start) : copyHolders(from, start)).catch(
            async (error: unknown) => {
              // An adopted partial whose recorded prefix lies: discarded, the copy starts again from zero.
              if (!(error instanceof PrefixMismatchError) || !partial || !start) throw error;
              await partial.restartFromZero(to, start);
              start = undefined;
              return 'file' in from ? copyFile(from.file, undefined) : copyHolders(from, undefined);
            },
          )
        : await chunkCopy({
            chunks: from.chunks,
            to,
            maxBytes: expected.size,
            signal,
            onProgress: options.onProgress,
            writeError,
            describe,
            ...(pieceBytes === undefined ? {} : { pieceBytes }),
          }));
    if (store.fsync) await io(context, 'fsync of the partial copy', () => to.sync());
    open = false;
    await io(context, 'closing the partial copy', () => to.close());

    if (expected.size !== undefined && bytes !== expected.size) {
      throw new ReasonError(
        'SIZE_MISMATCH',
        `${describe}: ${bytes} bytes arrived, expected ${expected.size}; nothing was published`,
      );
    }
    if (expected.sha256 !== undefined && sha256 !== expected.sha256) {
      // A piece copy wrote only pieces whose sha256 was its list's, in the very buffer written: a whole
      // image of other bytes means its partial changed on disk since (a second writer, the disk), not that
      // the source is wrong. Another attempt, from a fresh partial, may well succeed.
      if ('holders' in from)
        throw new ReasonError(
          'IO_ERROR',
          `${describe}: the partial copy has sha256 ${sha256}, expected ${expected.sha256}, although every piece matched its sha256 as it was written: it changed on disk after its pieces were verified; nothing was published`,
        );
      throw new ReasonError(
        'CHECKSUM_MISMATCH',
        `${describe}: the bytes have sha256 ${sha256}, expected ${expected.sha256}; nothing was published`,
      );
    }
    throwIfAborted(signal);
    await options.beforeIrreversibleStep?.('publish');
    throwIfAborted(signal);
    // The lock is not enforced by storage: a holder paused after its check (a partitioned host) may get
    // here after another holder published the same bytes. Replacing them would only unverify them for a
    // moment (meta removed first) and hide an open file on sshfs/NFS: keep what is there.
    const present = (await store.inspect(destination, imageId, context)).meta;
    if (present && present.sha256 === sha256 && present.size === bytes) {
      await swarm?.close();
      await store.discard(tmpPath);
      await partial?.forgetRecord();
      return { bytes, meta: present, resumedBytes: start?.bytes ?? 0 };
    }

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
    if (hadMeta && store.fsync) {
      await io(context, 'fsync of the images folder', () => fsyncDir(destination.images));
    }
    await io(context, 'publishing (rename)', () => fsp.rename(tmpPath, finalPath));
    renamed = true;
  } catch (error) {
    if (open) await store.closeQuietly(to, tmpPath);
    // No reader is sent to a partial about to go: its record goes first.
    await swarm?.close();
    // Only a copy that dies (killed, machine crash, paused and taken over) leaves a partial to resume.
    if (!renamed) await (partial ? partial.discard() : store.discard(tmpPath));
    throw error;
  }
  try {
    return await finishPublish();
  } finally {
    // Kept until the meta is written: a reader that finds the record gone then finds the published,
    // verified image in its place and reads its pieces from there (swarm-holders.ts).
    await swarm?.close();
  }

  async function finishPublish() {
    await partial?.forgetRecord();

    // Published: from here an abort no longer stops us, an image without meta would only be copied again.
    if (store.fsync) await io(context, 'fsync of the images folder', () => fsyncDir(destination.images));
    // Before the meta, so that a verified image's list is there unless writing it failed (logged). A list
    // names the sha256 and size it describes: one left beside other bytes is never taken for theirs.
    await recordPieceList(
      store,
      destination,
      { imageId, size: bytes, sha256 },
      pieceBytes ?? PIECE_BYTES,
      pieces,
      context,
    );
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
    await store.writeMeta(destination, meta, context);
    return { bytes, meta, resumedBytes: start?.bytes ?? 0 };
  }
}
