import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { ConductorError } from '@app/contracts';
import type { NodeLayout } from './cache-layout';
import { ensureNodeFolder, fsyncDir } from './durable-fs';
import { type IoContext, io, isErrno, mapIoError } from './fs-errors';
import { throwIfAborted } from './image-copier';
import type { ImageMeta } from './image-meta';
import type { ExpectedImage, StoreContext } from './store-context';

export type IrreversibleStep = 'publish' | 'meta';

/**
 * The publish step a copy and an import share (the place for resumable partial copies and bandwidth
 * caps): streams `from` into a fresh `tmp/<imageId>~<tag>.part`, fsyncs, verifies size and sha256, lets
 * the caller check before each irreversible step, publishes by rename, then writes the meta.
 */
export async function publishImage(
  store: StoreContext,
  options: {
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
  },
): Promise<{ bytes: number; meta: ImageMeta }> {
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
  const tmpPath = store.layout.tmpPath(destination, imageId, options.tag);
  const finalPath = store.layout.imagePath(destination, imageId);
  const metaPath = store.layout.metaPath(destination, imageId);

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
    ({ bytes, sha256 } = await store.copier.copy({
      from: options.from,
      to,
      maxBytes: expected.size,
      signal,
      onProgress: options.onProgress,
      readError: (error) => mapIoError(error, options.sourceContext, 'reading'),
      writeError: (error) => mapIoError(error, context, 'writing the partial copy'),
      describe,
    }));
    if (store.fsync) await io(context, 'fsync of the partial copy', () => to.sync());
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
    if (hadMeta && store.fsync) {
      await io(context, 'fsync of the images folder', () => fsyncDir(destination.images));
    }
    await io(context, 'publishing (rename)', () => fsp.rename(tmpPath, finalPath));
    renamed = true;
  } catch (error) {
    if (open) await store.closeQuietly(to, tmpPath);
    if (!renamed) await store.discard(tmpPath);
    throw error;
  }

  // Published: from here an abort no longer stops us, an image without meta would only be copied again.
  if (store.fsync) await io(context, 'fsync of the images folder', () => fsyncDir(destination.images));
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
  return { bytes, meta };
}
