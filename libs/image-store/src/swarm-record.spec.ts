import { describe, expect, it } from 'vitest';
import type { PieceList } from './piece-list';
import {
  SWARM_READING_MAX,
  type SwarmRecord,
  checkSwarmRecord,
  countPieces,
  emptyHave,
  encodeHave,
  hasPiece,
  parseSwarmRecordName,
  setPiece,
  swarmPartialName,
  swarmRecordName,
  swarmRecordSchema,
} from './swarm-record';

const IMAGE = 'ubuntu-24.04.qcow2';
const SHA = 'a'.repeat(64);
// Eleven pieces: a bitmap of two bytes, the second one partly used.
const LIST: Pick<PieceList, 'imageId' | 'sha256' | 'size' | 'pieceBytes' | 'pieces'> = {
  imageId: IMAGE,
  sha256: SHA,
  size: 10 * 4 * 1024 * 1024 + 5,
  pieceBytes: 4 * 1024 * 1024,
  pieces: Array.from({ length: 11 }, (_, i) => i.toString(16).padStart(64, '0')),
};

function recordOf(have: Uint8Array, overrides: Partial<SwarmRecord> = {}): SwarmRecord {
  return {
    v: 1,
    imageId: IMAGE,
    node: 'node-c',
    attemptId: 'attempt-7',
    sha256: SHA,
    size: LIST.size,
    pieceBytes: LIST.pieceBytes,
    pieceCount: LIST.pieces.length,
    have: encodeHave(have),
    reading: [],
    updatedAt: new Date().toISOString(),
    ...overrides,
  };
}

describe('swarm record names', () => {
  it('parse back to the node and attempt they were made of', () => {
    for (const [node, attemptId] of [
      ['node-c', 'attempt-7'],
      ['n.1_x', 'A-b.c_9'],
      ['x'.repeat(64), 'y'.repeat(64)],
    ] as const) {
      const name = swarmRecordName(node, attemptId);
      expect(name).toBe(`${node}~${attemptId}.json`);
      expect(parseSwarmRecordName(name)).toEqual({ node, attemptId });
    }
  });

  it.each([
    ['no ~', 'node-c-attempt-7.json'],
    ['~ first', '~attempt-7.json'],
    ['~ last', 'node-c~.json'],
    ['two ~', 'node-c~attempt~7.json'],
    ['~ in the suffix', 'node-c~attempt-7~.json'],
    ['not .json', 'node-c~attempt-7.jsonx'],
    ['no suffix', 'node-c~attempt-7'],
    ['a temp file of a rewrite', '.record-0b9f7c1e-8d52-4c33-9a57-6c3e2f1d0a11.tmp'],
    ['a hidden name', '.node-c~attempt-7.json'],
    ['a node id with a space', 'node c~attempt-7.json'],
    ['a node id with ..', 'node..c~attempt-7.json'],
    ['an attempt id with ..', 'node-c~attempt..7.json'],
    ['an attempt id starting with -', 'node-c~-attempt-7.json'],
    ['a node id of 65 characters', `${'x'.repeat(65)}~attempt-7.json`],
    ['an attempt id of 65 characters', `node-c~${'y'.repeat(65)}.json`],
  ])('are not records when they have %s (%s)', (_why, name) => {
    expect(parseSwarmRecordName(name)).toBeUndefined();
  });

  it('name the partial file of the attempt (cache-layout.ts)', () => {
    expect(swarmPartialName({ imageId: IMAGE, attemptId: 'attempt-7' })).toBe(`${IMAGE}~attempt-7.part`);
  });
});

describe('swarm record bitmaps', () => {
  it('hold bit i in byte i >> 3, lowest bit first, and encode to base64', () => {
    const have = emptyHave(11);
    expect(have).toHaveLength(2);
    for (const i of [0, 3, 8, 10]) setPiece(have, i);
    expect([...have]).toEqual([0b0000_1001, 0b0000_0101]);
    expect([0, 1, 3, 8, 9, 10].map((i) => hasPiece(have, i))).toEqual([true, false, true, true, false, true]);
    expect(countPieces(have, 11)).toBe(4);
    expect(encodeHave(have)).toBe(Buffer.from([9, 5]).toString('base64'));
    expect(emptyHave(8)).toHaveLength(1);
    expect(emptyHave(9)).toHaveLength(2);
  });
});

describe('checkSwarmRecord', () => {
  const have = emptyHave(11);
  setPiece(have, 2);
  setPiece(have, 10);
  const name = swarmRecordName('node-c', 'attempt-7');

  it('gives the bitmap of a record of the same image, bytes and pieces, and the pieces it is reading', () => {
    const checked = checkSwarmRecord(recordOf(have, { reading: [4, 0, 10] }), name, LIST);
    expect(checked.problem).toBeUndefined();
    expect([...checked.have!]).toEqual([...have]);
    expect([...checked.reading!].sort((a, b) => a - b)).toEqual([0, 4, 10]);
  });

  it('refuses a record that names a piece being read past the last, and one naming too many', () => {
    expect(checkSwarmRecord(recordOf(have, { reading: [3, 11] }), name, LIST).problem).toBe(
      'reading: piece 11, the image has 11 pieces',
    );
    const record = recordOf(have, { reading: Array.from({ length: SWARM_READING_MAX + 1 }, (_, i) => i) });
    expect(swarmRecordSchema.safeParse(record).success).toBe(false);
    expect(swarmRecordSchema.safeParse(recordOf(have, { reading: [-1] })).success).toBe(false);
    expect(swarmRecordSchema.safeParse(recordOf(have)).success).toBe(true);
  });

  it.each([
    ['another node', swarmRecordName('node-d', 'attempt-7')],
    ['another attempt', swarmRecordName('node-c', 'attempt-8')],
    ['no record name', '.record-1.tmp'],
  ])('refuses a record in a file named for %s, naming node and attemptId', (_why, fileName) => {
    expect(checkSwarmRecord(recordOf(have), fileName, LIST).problem).toBe(
      `node, attemptId: the file is named ${fileName}`,
    );
  });

  it.each([
    ['imageId', { imageId: 'debian-12.qcow2' }, /^imageId: debian-12\.qcow2, not ubuntu-24\.04\.qcow2$/],
    ['sha256', { sha256: 'b'.repeat(64) }, /^sha256, size: another image's \(b{64}, 41943045 bytes\)$/],
    ['size', { size: LIST.size + 1 }, /^sha256, size: another image's \(a{64}, 41943046 bytes\)$/],
    ['pieceBytes', { pieceBytes: 2 * 1024 * 1024 }, /^pieceBytes, pieceCount: 2097152 × 11, not the list's$/],
    ['pieceCount', { pieceCount: 12 }, /^pieceBytes, pieceCount: 4194304 × 12, not the list's$/],
    ['have (too short)', { have: encodeHave(emptyHave(8)) }, /^have: 1 bytes, expected 2$/],
    ['have (too long)', { have: encodeHave(emptyHave(17)) }, /^have: 3 bytes, expected 2$/],
  ])('refuses a record whose %s is not the list’s, naming the field', (_field, overrides, problem) => {
    const checked = checkSwarmRecord(recordOf(have, overrides), name, LIST);
    expect(checked.have).toBeUndefined();
    expect(checked.problem).toMatch(problem);
  });
});
