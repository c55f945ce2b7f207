import { z } from 'zod';
import { byteCountSchema, imageIdSchema, sha256Schema } from '@app/contracts';
import { describeIssues } from './shared-json-file';

/*
 * The piece list of a published image (docs/cache-layout.md, "Piece lists"): the sha256 of
 * each fixed-size piece of the image, bound to the whole image's sha256 and size. It is what a copy that
 * reads bytes from somewhere other than a published, verified image will check each piece against before
 * writing or passing it on. This file is the format only: pure, no I/O.
 */

/**
 * The largest piece size this release writes: 4 MiB, as Kraken's default, for images of 1 GiB and more
 * (pieceBytesFor). A multiple of the copy's 1 MiB chunk and a divisor of its 32 MiB resume checkpoint, so
 * pieces, chunks and checkpoints line up; small enough that a piece lost with its holder costs at most
 * 4 MiB again (0.25 s at 16 MiB/s); big enough that the list is 1/65,536 of the image (72 bytes of JSON
 * per 4 MiB piece).
 */
export const PIECE_BYTES = 4 * 1024 * 1024;
/** pieceBytesFor halves the piece down to 1 MiB until an image has at least this many pieces. */
export const PIECES_WANTED = 256;
/** Readers accept any power of two in this range, so that a later release may choose another size. */
export const PIECE_BYTES_MIN = 1024 * 1024;
export const PIECE_BYTES_MAX = 64 * 1024 * 1024;
/** At most this many pieces (1 TiB at 4 MiB): a bigger image gets no list. */
export const PIECE_LIST_MAX_PIECES = 262_144;
/**
 * A list file is at most this big: the maximum number of pieces at 72 bytes each as serialized below
 * (18 MiB), plus room for the fields around them.
 */
export const PIECE_LIST_MAX_BYTES = 18 * 1024 * 1024 + 64 * 1024;

export interface PieceList {
  v: 1;
  imageId: string;
  /** The whole image: its size and sha256, as its meta records them. */
  size: number;
  sha256: string;
  pieceBytes: number;
  /** sha256 of each piece in order; the last one covers what is left (shorter), none for an empty image. */
  pieces: string[];
}

const pieceBytesSchema = z
  .int('must be a whole number')
  .min(PIECE_BYTES_MIN, `must be at least ${PIECE_BYTES_MIN}`)
  .max(PIECE_BYTES_MAX, `must be at most ${PIECE_BYTES_MAX}`)
  .refine((n) => (n & (n - 1)) === 0, 'must be a power of two');

// The list comes from a shared folder any node may write: everything is checked, nothing trusted.
export const pieceListSchema: z.ZodType<PieceList> = z
  .object({
    v: z.literal(1),
    imageId: imageIdSchema,
    size: byteCountSchema,
    sha256: sha256Schema,
    pieceBytes: pieceBytesSchema,
    pieces: z
      .array(sha256Schema)
      .max(PIECE_LIST_MAX_PIECES, `must have at most ${PIECE_LIST_MAX_PIECES} items`),
  })
  .superRefine((list, ctx) => {
    const wanted = pieceCount(list.size, list.pieceBytes);
    if (list.pieces.length !== wanted)
      ctx.addIssue({
        code: 'custom',
        path: ['pieces'],
        message: `has ${list.pieces.length} items, a size of ${list.size} in pieces of ${list.pieceBytes} bytes needs ${wanted}`,
      });
  });

/**
 * The piece size this release writes for an image of `size` bytes: the largest of 4, 2 and 1 MiB that
 * gives it at least PIECES_WANTED pieces (1 MiB below 512 MiB, 2 MiB below 1 GiB); 4 MiB for a size not
 * known before the bytes arrive; undefined when even 4 MiB pieces are more than a list may hold (no list).
 * Why smaller pieces for smaller images: a copy in progress can pass on a piece only once it is whole,
 * so a fan-out's pipeline is some pieces' time deep whatever the image. At 4 MiB that was 0.28 of one
 * copy's time for 256 MiB at 4 MiB/s in the per-copy model (bench/swarm-simulation.ts), 0.07 at 1 MiB,
 * while for 1 GiB and more it is small beside the copy. Measured at 64 nodes: 1.24 against 1.32-1.40
 * (bench/RESULTS.md, rows 14l and 14m). The number of pieces, and with it the list's
 * size and each copy's per-piece work, stays at most max(512, size / 4 MiB).
 */
export function pieceBytesFor(size: number | undefined): number | undefined {
  if (size === undefined) return PIECE_BYTES;
  if (pieceCount(size, PIECE_BYTES) > PIECE_LIST_MAX_PIECES) return undefined;
  let bytes = PIECE_BYTES;
  while (bytes > PIECE_BYTES_MIN && size / bytes < PIECES_WANTED) bytes /= 2;
  return bytes;
}

/** How many pieces an image of `size` bytes has (the last one may be shorter). */
export function pieceCount(size: number, pieceBytes: number): number {
  return Math.ceil(size / pieceBytes);
}

/** The byte range of piece `index`: [start, end). */
export function pieceRange(list: Pick<PieceList, 'size' | 'pieceBytes'>, index: number): [number, number] {
  const start = index * list.pieceBytes;
  return [start, Math.min(list.size, start + list.pieceBytes)];
}

/**
 * The list of an image whose bytes were just hashed, or why there is none: the digests must be as many
 * as its size needs (a hasher that stopped at PIECE_LIST_MAX_PIECES gives none).
 */
export function buildPieceList(
  image: { imageId: string; size: number; sha256: string },
  pieceBytes: number,
  pieces: readonly string[] | undefined,
): { list: PieceList; problem?: undefined } | { list?: undefined; problem: string } {
  if (pieces === undefined)
    return { problem: `more than ${PIECE_LIST_MAX_PIECES} pieces of ${pieceBytes} bytes` };
  const list: PieceList = { v: 1, ...image, pieceBytes, pieces: [...pieces] };
  const parsed = pieceListSchema.safeParse(list);
  return parsed.success ? { list } : { problem: describeIssues(parsed.error) };
}

/** One digest a line, so that the size bound above holds and a list reads well in a terminal. */
export function serializePieceList(list: PieceList): string {
  return JSON.stringify(list, null, 2) + '\n';
}

/** Parses a list file's text: the list, or why it is invalid ("field: reason"). Pure. */
export function parsePieceList(
  text: string,
  imageId: string,
): { value: PieceList; invalid?: undefined } | { value?: undefined; invalid: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { invalid: `not JSON (${error instanceof Error ? error.message : String(error)})` };
  }
  const parsed = pieceListSchema.safeParse(json);
  if (!parsed.success) return { invalid: describeIssues(parsed.error) };
  const misnamed = pieceListMisnamed(parsed.data, imageId);
  return misnamed === undefined ? { value: parsed.data } : { invalid: misnamed };
}

/** Why a list does not belong under the file name of `imageId`, or undefined. */
export function pieceListMisnamed(list: PieceList, imageId: string): string | undefined {
  return list.imageId === imageId
    ? undefined
    : `imageId: is ${JSON.stringify(list.imageId)}, the file is named for ${JSON.stringify(imageId)}`;
}

/**
 * Why a valid list is not the list of the image its meta describes (an older image's list left by a
 * release that does not know lists, a list written late by a paused holder), or undefined when it is.
 */
export function pieceListMismatch(
  list: PieceList,
  meta: { sha256: string; size: number },
): string | undefined {
  if (list.sha256 !== meta.sha256) return `sha256: is ${list.sha256}, the image's meta says ${meta.sha256}`;
  if (list.size !== meta.size) return `size: is ${list.size}, the image's meta says ${meta.size}`;
  return undefined;
}
