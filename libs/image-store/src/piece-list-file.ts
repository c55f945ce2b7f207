import { errorText } from '@app/contracts';
import type { NodeLayout } from './cache-layout';
import { uniqueTag, writeFileAtomic } from './durable-fs';
import { type IoContext, io } from './fs-errors';
import {
  PIECE_LIST_MAX_BYTES,
  type PieceList,
  buildPieceList,
  pieceListMisnamed,
  pieceListMismatch,
  pieceListSchema,
  serializePieceList,
} from './piece-list';
import { type JsonFileRead, readJsonFile } from './shared-json-file';
import { type StoreContext, cacheContext } from './store-context';

/*
 * The piece list file of a published image, `images/<imageId>~pieces.json` (piece-list.ts has the format):
 * written by a publish, under the destination's exclusive lock, after the image's rename and before its
 * meta; read back only for a verified image and only when it describes that image's sha256 and size. A
 * missing or unusable list is never an error: the image is still a verified whole-image source, only
 * without piece-level sharing. Each such problem is logged once per image version.
 */

/** A verified image's piece list, or why it has none usable. */
export type PieceListRead = { list: PieceList; problem?: undefined } | { list?: undefined; problem: string };

/** Reads and validates a list file: its list, missing, or invalid with the field and reason. */
export function readPieceListFile(file: string, imageId: string): Promise<JsonFileRead<PieceList>> {
  return readJsonFile(file, pieceListSchema, PIECE_LIST_MAX_BYTES, (list) =>
    pieceListMisnamed(list, imageId),
  );
}

/** The list of a verified image, validated against its meta (see PieceListRead). */
export async function readPieceList(
  store: StoreContext,
  layout: NodeLayout,
  imageId: string,
): Promise<PieceListRead> {
  const context = cacheContext(layout, imageId);
  const inspection = await store.inspect(layout, imageId, context);
  if (!inspection.meta) return { problem: `the image is not verified: ${inspection.problem}` };
  const meta = inspection.meta;
  const file = store.layout.piecesPath(layout, imageId);
  const read = await io(context, 'reading the piece list', () => readPieceListFile(file, imageId));
  const consequence = `image ${imageId} on node ${layout.node} is shared as a whole only, until it is copied again`;
  // Missing, or another image's: what a release without lists leaves (its images, its replaced or
  // deleted ones), the normal state of a cell being upgraded, so not worth a warning per image; a list
  // this release failed to write was logged when it failed. An invalid file is never normal: reported.
  if (read.missing) return { problem: 'piece list missing' };
  if (read.invalid !== undefined) {
    store.reportInvalid(file, read, consequence);
    return { problem: `piece list invalid: ${read.invalid}` };
  }
  const mismatch = pieceListMismatch(read.value, meta);
  if (mismatch !== undefined) return { problem: `piece list of another image: ${mismatch}` };
  return { list: read.value };
}

/**
 * Writes the list of an image just verified, atomically (a temporary name in tmp/, fsync, rename, fsync of
 * images/). Never throws: a list that cannot be built or written is logged, and the publish goes on
 * without it.
 */
export async function recordPieceList(
  store: StoreContext,
  layout: NodeLayout,
  image: { imageId: string; size: number; sha256: string },
  pieceBytes: number,
  pieces: readonly string[] | undefined,
  context: IoContext,
): Promise<boolean> {
  const built = buildPieceList(image, pieceBytes, pieces);
  if (!built.list) {
    store.onWarning(
      `node ${layout.node}, image ${image.imageId}: no piece list (${built.problem}); it is shared as a whole only`,
    );
    return false;
  }
  try {
    await io(context, 'writing the piece list', () =>
      writeFileAtomic({
        tmpPath: store.layout.tmpPath(layout, image.imageId, uniqueTag('pieces')),
        finalPath: store.layout.piecesPath(layout, image.imageId),
        finalDir: layout.images,
        data: serializePieceList(built.list),
        fsync: store.fsync,
        discard: (tmpPath) => store.discard(tmpPath),
      }),
    );
    return true;
  } catch (error) {
    store.onWarning(
      `node ${layout.node}, image ${image.imageId}: the piece list was not written (${errorText(error)}); it is shared as a whole only`,
    );
    return false;
  }
}
