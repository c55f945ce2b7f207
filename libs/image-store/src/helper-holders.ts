import type { FileHandle } from 'node:fs/promises';
import { type StreamPace, openPublishedImage } from './image-copier';
import type { ImageMeta } from './image-meta';
import { type IoContext, mapIoError } from './fs-errors';
import type { PieceHolder } from './piece-copy';
import { type PieceList, pieceBytesFor, pieceListMismatch } from './piece-list';
import { readPieceList } from './piece-list-file';
import type { StoreContext } from './store-context';

/** A further holder of a copy, under a shared lock its caller holds: its read cap, and its lock's loss. */
export interface HelperHolder {
  node: string;
  /** Its reads (afterRead) and the destination's writes (beforeWrite). */
  pace?: StreamPace;
  lost?: AbortSignal;
}

export function readErrorOf(context: IoContext): (error: unknown) => unknown {
  return (error) => mapIoError(error, context, 'reading');
}

/**
 * The helpers a copy may read pieces from besides its source, opened and checked, with the piece list
 * they are checked against; undefined when the copy reads its source alone: no helpers, no usable list of
 * the source (missing, another image's, another piece size, fewer than two pieces), or no helper that
 * holds the same verified image with the same list. A helper that does not fit is left out, never a
 * reason to fail the copy. Every file opened is added to `opened`, for the caller to close.
 */
export async function openHelpers(
  store: StoreContext,
  request: { helpers?: HelperHolder[]; destination: string },
  source: string,
  imageId: string,
  sourceMeta: ImageMeta,
  opened: Array<[FileHandle, string]>,
): Promise<{ holders: PieceHolder[]; list: PieceList } | undefined> {
  const wanted = (request.helpers ?? []).filter((h) => h.node !== source && h.node !== request.destination);
  if (wanted.length === 0) return undefined;
  const list = await sourcePieceList(store, source, imageId, sourceMeta);
  if (!list) return undefined;
  const holders: PieceHolder[] = [];
  for (const helper of wanted) {
    const holder = await openHelper(store, helper, imageId, list, opened).catch(() => undefined);
    if (holder) holders.push(holder);
  }
  return holders.length > 0 ? { holders, list } : undefined;
}

/**
 * The source's piece list when pieces may be read from elsewhere against it: valid, the image of the
 * source's meta, in the piece size this release gives that image (pieceBytesFor), at least two pieces; else
 * undefined (read as a whole).
 */
export async function sourcePieceList(
  store: StoreContext,
  source: string,
  imageId: string,
  sourceMeta: ImageMeta,
): Promise<PieceList | undefined> {
  const { list } = await readPieceList(store, store.layout.node(source, 'source'), imageId).catch(
    (error: unknown) => ({ list: undefined, problem: String(error) }),
  );
  if (!list || pieceListMismatch(list, sourceMeta) !== undefined) return undefined;
  // In the size this release gives the image: every copy of it then reads and announces the same pieces
  // (a list of another size, from a download of unknown size or another release, is read as a whole).
  if (list.pieceBytes !== pieceBytesFor(list.size) || list.pieces.length < 2) return undefined;
  return list;
}

async function openHelper(
  store: StoreContext,
  helper: HelperHolder,
  imageId: string,
  list: PieceList,
  opened: Array<[FileHandle, string]>,
): Promise<PieceHolder | undefined> {
  const layout = store.layout.node(helper.node, 'source');
  const context: IoContext = { side: 'source', what: `source node ${helper.node}, image ${imageId}` };
  const theirs = await readPieceList(store, layout, imageId);
  if (!theirs.list || !sameList(theirs.list, list)) return undefined;
  const file = store.layout.imagePath(layout, imageId);
  const handle = await openPublishedImage(file);
  opened.push([handle, file]);
  if ((await handle.stat()).size !== list.size) return undefined;
  return {
    node: helper.node,
    file: handle,
    ...(helper.pace ? { pace: helper.pace } : {}),
    ...(helper.lost ? { lost: helper.lost } : {}),
    readError: readErrorOf(context),
  };
}

/** The same image in the same pieces: every digest equal (a list is only read for a verified image). */
function sameList(a: PieceList, b: PieceList): boolean {
  return (
    a.sha256 === b.sha256 &&
    a.size === b.size &&
    a.pieceBytes === b.pieceBytes &&
    a.pieces.every((digest, i) => digest === b.pieces[i])
  );
}
