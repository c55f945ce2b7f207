import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { imageIdSchema } from '@app/contracts';
import { PIECES_SUFFIX, piecesImageId } from './cache-layout';
import { isLitterName } from './cache-litter';
import { PieceHasher } from './piece-hasher';
import {
  PIECE_BYTES,
  PIECE_LIST_MAX_BYTES,
  PIECE_LIST_MAX_PIECES,
  type PieceList,
  buildPieceList,
  parsePieceList,
  pieceBytesFor,
  pieceCount,
  pieceListMismatch,
  pieceRange,
  serializePieceList,
} from './piece-list';

const MiB = 1024 * 1024;
const hex = (seed: string) => createHash('sha256').update(seed).digest('hex');

function list(overrides: Partial<PieceList> = {}): PieceList {
  const size = overrides.size ?? 9 * MiB;
  const pieceBytes = overrides.pieceBytes ?? PIECE_BYTES;
  return {
    v: 1,
    imageId: 'img.raw',
    size,
    sha256: hex('whole'),
    pieceBytes,
    pieces: Array.from({ length: pieceCount(size, pieceBytes) }, (_, i) => hex(`piece ${i}`)),
    ...overrides,
  };
}

const parse = (value: unknown, imageId = 'img.raw') => parsePieceList(JSON.stringify(value), imageId);

describe('piece list format', () => {
  it('round-trips a list through its text, for an empty image, one short piece and several', () => {
    for (const size of [0, 1, PIECE_BYTES, PIECE_BYTES + 1, 9 * MiB]) {
      const l = list({ size });
      expect(l.pieces).toHaveLength(size === 0 ? 0 : Math.ceil(size / PIECE_BYTES));
      expect(parsePieceList(serializePieceList(l), 'img.raw')).toEqual({ value: l });
    }
    expect(pieceRange(list(), 2)).toEqual([8 * MiB, 9 * MiB]);
    expect(pieceRange(list(), 0)).toEqual([0, 4 * MiB]);
  });

  it('gives an image the largest of 4, 2 and 1 MiB pieces with at least 256 of them, and no list past the limit', () => {
    const GiB = 1024 * MiB;
    expect(pieceBytesFor(undefined)).toBe(4 * MiB);
    for (const [size, bytes] of [
      [0, MiB],
      [1, MiB],
      [256 * MiB, MiB],
      [512 * MiB - 1, MiB],
      [512 * MiB, 2 * MiB],
      [GiB - 1, 2 * MiB],
      [GiB, 4 * MiB],
      [3 * GiB, 4 * MiB],
      [PIECE_LIST_MAX_PIECES * PIECE_BYTES, 4 * MiB],
    ] as const)
      expect(pieceBytesFor(size), `${size} bytes`).toBe(bytes);
    expect(pieceBytesFor(PIECE_LIST_MAX_PIECES * PIECE_BYTES + 1)).toBeUndefined();
  });

  it.each([
    [{ v: 2 }, /^v: /],
    [{ imageId: '../x' }, /^imageId: /],
    [{ size: -1 }, /^size: must not be negative/],
    [{ size: 1.5 }, /^size: must be a whole number/],
    [{ sha256: 'ABC' }, /^sha256: must be 64 lowercase/],
    [{ pieceBytes: 3 * MiB }, /^pieceBytes: must be a power of two/],
    [{ pieceBytes: 512 * 1024 }, /^pieceBytes: must be at least 1048576/],
    [{ pieceBytes: 128 * MiB }, /^pieceBytes: must be at most 67108864/],
    [{ pieces: [hex('a'), 'nothex'] }, /^pieces\.1: must be 64 lowercase/],
    [{ pieces: [hex('a')] }, /^pieces: has 1 items, a size of 9437184 in pieces of 4194304 bytes needs 3/],
    [{ pieces: 'x' }, /^pieces: /],
  ])('names the field and the reason of an invalid list: %j', (change, reason) => {
    const parsed = parse({ ...list(), ...change });
    expect(parsed.value).toBeUndefined();
    expect(parsed.invalid).toMatch(reason);
  });

  it('refuses text that is not JSON, a missing field, and a list named for another image', () => {
    expect(parsePieceList('{"v":1,', 'img.raw').invalid).toMatch(/^not JSON/);
    const { sha256: _gone, ...withoutSha } = list();
    expect(parse(withoutSha).invalid).toMatch(/^sha256: /);
    expect(parse(list(), 'other.raw').invalid).toBe(
      'imageId: is "img.raw", the file is named for "other.raw"',
    );
  });

  it('is bound to the sha256 and size of the image its meta describes', () => {
    const l = list();
    expect(pieceListMismatch(l, { sha256: l.sha256, size: l.size })).toBeUndefined();
    expect(pieceListMismatch(l, { sha256: hex('other'), size: l.size })).toMatch(/^sha256: is /);
    expect(pieceListMismatch(l, { sha256: l.sha256, size: l.size + 1 })).toBe(
      `size: is ${l.size}, the image's meta says ${l.size + 1}`,
    );
  });

  it('builds only a list whose digests are as many as the size needs, never past the limit', () => {
    const image = { imageId: 'img.raw', size: 9 * MiB, sha256: hex('whole') };
    expect(buildPieceList(image, PIECE_BYTES, list().pieces).list).toEqual(list());
    expect(buildPieceList(image, PIECE_BYTES, [hex('a')]).problem).toMatch(/^pieces: has 1 items/);
    expect(buildPieceList(image, PIECE_BYTES, undefined).problem).toBe(
      `more than ${PIECE_LIST_MAX_PIECES} pieces of ${PIECE_BYTES} bytes`,
    );
  });

  it('keeps the largest list within the file bound (1 TiB in 4 MiB pieces)', () => {
    const largest = list({
      imageId: 'i'.repeat(128),
      size: PIECE_LIST_MAX_PIECES * PIECE_BYTES,
      pieces: Array.from({ length: PIECE_LIST_MAX_PIECES }, () => 'f'.repeat(64)),
    });
    const text = serializePieceList(largest);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(PIECE_LIST_MAX_BYTES);
    expect(parsePieceList(text, largest.imageId).value).toBeDefined();
    const tooMany = { ...largest, size: largest.size + 1, pieces: [...largest.pieces, 'f'.repeat(64)] };
    expect(parse(tooMany, largest.imageId).invalid).toMatch(/^pieces: must have at most 262144 items/);
  });

  it('has a file name no image id, meta file or network litter can have', () => {
    for (const id of ['a', 'img.v1.raw', 'x'.repeat(128)]) {
      const name = id + PIECES_SUFFIX;
      expect(imageIdSchema.safeParse(name).success).toBe(false);
      expect(name.endsWith('.meta.json')).toBe(false);
      expect(isLitterName(name)).toBe(false);
      expect(piecesImageId(name)).toBe(id);
    }
    expect(piecesImageId('img.meta.json')).toBeUndefined();
    expect(piecesImageId('img')).toBeUndefined();
  });
});

describe('PieceHasher', () => {
  const bytes = Buffer.alloc(3 * MiB + 5);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  const expected = (pieceBytes: number) =>
    Array.from({ length: Math.ceil(bytes.length / pieceBytes) }, (_, i) =>
      createHash('sha256')
        .update(bytes.subarray(i * pieceBytes, (i + 1) * pieceBytes))
        .digest('hex'),
    );

  it('gives the same digests whatever the chunks it is fed (short reads end a chunk anywhere)', () => {
    for (const chunk of [1 * MiB, 1 * MiB - 1, 777_777, 3 * MiB + 5]) {
      const hasher = new PieceHasher(MiB);
      for (let at = 0; at < bytes.length; at += chunk) hasher.update(bytes.subarray(at, at + chunk));
      expect(hasher.finish()).toEqual(expected(MiB));
    }
    const empty = new PieceHasher(MiB);
    empty.update(Buffer.alloc(0));
    expect(empty.finish()).toEqual([]);
  });

  it('stops and gives nothing past its limit of pieces', () => {
    const hasher = new PieceHasher(MiB, 3);
    hasher.update(bytes);
    expect(hasher.finish()).toBeUndefined();
    const atLimit = new PieceHasher(MiB, 4);
    atLimit.update(bytes);
    expect(atLimit.finish()).toEqual(expected(MiB));
    expect(() => new PieceHasher(0)).toThrow(/pieceBytes: must be a whole number of at least 1/);
  });
});
