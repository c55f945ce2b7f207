import { z } from 'zod';
import { holderIdSchema, imageIdSchema, nodeIdSchema, sha256Schema } from '@app/contracts';
import { tmpName } from './cache-layout';
import type { PieceList } from './piece-list';

/*
 * A copy in progress that others may read verified pieces from (docs/copies.md, "Reading from copies in
 * progress"): `CACHE_ROOT/.icc-swarms/<imageId>/<node>~<attemptId>.json`, written by the copy (under its
 * destination's exclusive lock) each time more of its pieces are verified and written. It names the
 * partial file and the pieces in it that were verified against the image's piece list. A reader trusts
 * none of it: every piece it reads is hashed against a list whose authority is a published, verified image,
 * so a record that lies (or is late, or names a partial since removed) costs a read, never a wrong byte.
 * This file is the format only: pure, no I/O.
 */

export const SWARMS_FOLDER = '.icc-swarms';

/** Record files are at most this big: a bitmap of PIECE_LIST_MAX_PIECES pieces in base64, and the fields. */
export const SWARM_RECORD_MAX_BYTES = 48 * 1024;

/**
 * A record not rewritten for this long is a dead copy's (killed; its writer's own removal never came):
 * readers leave it alone and the background round removes it. A live copy rewrites its record at least
 * this often while it has pieces to add, and every SWARM_KEEPALIVE_MS when it has none.
 */
export const SWARM_STALE_MS = 30_000;
export const SWARM_KEEPALIVE_MS = 5_000;
/**
 * How often a copy looks for new copies in progress, and re-reads the records of those it reads from when
 * they ran dry; other conductors' records read within this time are shared by this process's copies.
 */
export const SWARM_POLL_MS = 250;
/**
 * Pieces a record names as being read at most: a copy's reads in flight are bounded by its holders and its
 * write cap, far below this; past it the record names the first ones (a hint, like the rest).
 */
export const SWARM_READING_MAX = 64;

export interface SwarmRecord {
  v: 1;
  imageId: string;
  node: string;
  attemptId: string;
  /** The whole image and its pieces: those of the list the pieces were verified against. */
  sha256: string;
  size: number;
  pieceBytes: number;
  pieceCount: number;
  /** Verified pieces in the partial file, a bitmap (bit i of byte i >> 3, lowest bit first), base64. */
  have: string;
  /**
   * Pieces the copy is reading now (from any holder), when the record was written: other conductors'
   * copies count them as coming, as this conductor's copies see each other's reads on the board
   * (swarm-board.ts), and their verified source leaves them to this copy.
   */
  reading: number[];
  updatedAt: string;
}

export const swarmRecordSchema: z.ZodType<SwarmRecord> = z.strictObject({
  v: z.literal(1),
  imageId: imageIdSchema,
  node: nodeIdSchema,
  attemptId: holderIdSchema,
  sha256: sha256Schema,
  size: z.int().min(1),
  pieceBytes: z.int().min(1),
  pieceCount: z.int().min(1),
  have: z.base64(),
  reading: z.array(z.int().min(0)).max(SWARM_READING_MAX),
  updatedAt: z.iso.datetime(),
});

/** `<node>~<attemptId>.json`: one record per copy; node ids and attempt ids never contain `~`. */
export function swarmRecordName(node: string, attemptId: string): string {
  return `${node}~${attemptId}.json`;
}

/** Inverse of swarmRecordName; undefined for names this release did not write (temporary files among them). */
export function parseSwarmRecordName(name: string): { node: string; attemptId: string } | undefined {
  const match = /^([^~.][^~]*)~([^~]+)\.json$/.exec(name);
  if (!match) return undefined;
  const node = nodeIdSchema.safeParse(match[1]);
  const attemptId = holderIdSchema.safeParse(match[2]);
  return node.success && attemptId.success ? { node: node.data, attemptId: attemptId.data } : undefined;
}

/** The partial file a record's pieces are in: the attempt's partial in the node's tmp/ (cache-layout.ts). */
export function swarmPartialName(record: Pick<SwarmRecord, 'imageId' | 'attemptId'>): string {
  return tmpName(record.imageId, record.attemptId);
}

/** An empty bitmap for `count` pieces. */
export function emptyHave(count: number): Uint8Array {
  return new Uint8Array(Math.ceil(count / 8));
}

export function hasPiece(have: Uint8Array, index: number): boolean {
  return (have[index >> 3]! & (1 << (index & 7))) !== 0;
}

export function setPiece(have: Uint8Array, index: number): void {
  have[index >> 3]! |= 1 << (index & 7);
}

export function countPieces(have: Uint8Array, count: number): number {
  let n = 0;
  for (let i = 0; i < count; i++) if (hasPiece(have, i)) n++;
  return n;
}

export function encodeHave(have: Uint8Array): string {
  return Buffer.from(have).toString('base64');
}

/**
 * Why `record`, read from file `name`, cannot be read from for an image with `list` (checked against the
 * list a copy trusts: same image, same bytes, same pieces), or its bitmap when it can.
 */
export function checkSwarmRecord(
  record: SwarmRecord,
  name: string,
  list: Pick<PieceList, 'imageId' | 'sha256' | 'size' | 'pieceBytes' | 'pieces'>,
):
  | { problem: string; have?: undefined; reading?: undefined }
  | { have: Uint8Array; reading: ReadonlySet<number>; problem?: undefined } {
  const named = parseSwarmRecordName(name);
  if (!named || named.node !== record.node || named.attemptId !== record.attemptId)
    return { problem: `node, attemptId: the file is named ${name}` };
  if (record.imageId !== list.imageId) return { problem: `imageId: ${record.imageId}, not ${list.imageId}` };
  if (record.sha256 !== list.sha256 || record.size !== list.size)
    return { problem: `sha256, size: another image's (${record.sha256}, ${record.size} bytes)` };
  if (record.pieceBytes !== list.pieceBytes || record.pieceCount !== list.pieces.length)
    return { problem: `pieceBytes, pieceCount: ${record.pieceBytes} × ${record.pieceCount}, not the list's` };
  const have = new Uint8Array(Buffer.from(record.have, 'base64'));
  if (have.length !== Math.ceil(list.pieces.length / 8))
    return { problem: `have: ${have.length} bytes, expected ${Math.ceil(list.pieces.length / 8)}` };
  const beyond = record.reading.find((index) => index >= list.pieces.length);
  if (beyond !== undefined)
    return { problem: `reading: piece ${beyond}, the image has ${list.pieces.length} pieces` };
  return { have, reading: new Set(record.reading) };
}
