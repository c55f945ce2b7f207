import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { COPY_CHUNK_BYTES, type ChunkIo, copyChunks } from './image-copier';

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 1));

/**
 * A source and a destination in memory. Reads may come back short (`shortAt`: positions where a read
 * returns only part of what was asked) and late; a write takes the bytes out of the caller's buffer only
 * when it completes, so a buffer read into again before its write finished shows up as wrong bytes.
 */
function memoryIo(source: Buffer, options: { shortAt?: Set<number>; slowWrites?: boolean } = {}) {
  const destination = Buffer.alloc(source.length);
  let readsInFlight = 0;
  let mostReadsInFlight = 0;
  const io: ChunkIo = {
    async read(buffer, position) {
      readsInFlight += 1;
      mostReadsInFlight = Math.max(mostReadsInFlight, readsInFlight);
      await tick();
      readsInFlight -= 1;
      let length = Math.min(buffer.length, Math.max(0, source.length - position));
      if (options.shortAt?.has(position)) length = Math.min(length, 1000);
      source.copy(buffer, 0, position, position + length);
      return length;
    },
    async write(buffer, offset, length, position) {
      if (options.slowWrites) for (let i = 0; i < 5; i++) await tick();
      buffer.copy(destination, position, offset, offset + length);
      return length;
    },
  };
  return { io, destination, mostReadsInFlight: () => mostReadsInFlight };
}

const fail = (error: unknown) => error;

describe('copyChunks', () => {
  const source = randomBytes(5 * COPY_CHUNK_BYTES + 12_345);

  it.each([2, 3, 4])(
    'with a ring of %i buffers: slow writes never see their buffer read into again, and reads ahead stay within the ring',
    async (buffers) => {
      const { io, destination, mostReadsInFlight } = memoryIo(source, { slowWrites: true });
      const result = await copyChunks({ io, buffers, readError: fail, writeError: fail, describe: 'test' });
      expect(result).toEqual({ bytes: source.length, sha256: sha256(source) });
      expect(destination.equals(source)).toBe(true);
      expect(mostReadsInFlight()).toBeLessThanOrEqual(buffers - 1);
    },
  );

  it('goes on right after a read that came back short in the middle of the file', async () => {
    const shortAt = new Set([COPY_CHUNK_BYTES, 3 * COPY_CHUNK_BYTES + 1000]);
    const { io, destination } = memoryIo(source, { shortAt, slowWrites: true });
    const result = await copyChunks({ io, buffers: 4, readError: fail, writeError: fail, describe: 'test' });
    expect(result).toEqual({ bytes: source.length, sha256: sha256(source) });
    expect(destination.equals(source)).toBe(true);
  });

  it('checkpoints only written and hashed prefixes', async () => {
    const { io } = memoryIo(source, { slowWrites: true });
    const saved: Array<{ bytes: number; sha256: string }> = [];
    await copyChunks({
      io,
      buffers: 3,
      readError: fail,
      writeError: fail,
      describe: 'test',
      checkpoint: {
        everyBytes: 2 * COPY_CHUNK_BYTES,
        save: async (bytes, prefix) => void saved.push({ bytes, sha256: prefix }),
      },
    });
    expect(saved.map((s) => s.bytes)).toEqual([2 * COPY_CHUNK_BYTES, 4 * COPY_CHUNK_BYTES]);
    for (const s of saved) expect(s.sha256).toBe(sha256(source.subarray(0, s.bytes)));
  });
});
