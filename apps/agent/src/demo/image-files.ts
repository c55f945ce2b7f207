import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';

const BLOCK = 1024 * 1024;

/**
 * Writes `bytes` bytes of random content and returns its sha256. One random 1 MiB block, each copy
 * stamped with its index, so generating 256 MiB stays fast while no two blocks are alike (a copy that
 * repeated or swapped chunks would not hash the same).
 */
export async function writeRandomImage(file: string, bytes: number): Promise<string> {
  const block = randomBytes(BLOCK);
  const hash = createHash('sha256');
  const handle = await fsp.open(file, 'w');
  try {
    for (let offset = 0, index = 0; offset < bytes; offset += BLOCK, index++) {
      block.writeUInt32BE(index, 0);
      const chunk = block.subarray(0, Math.min(BLOCK, bytes - offset));
      hash.update(chunk);
      await handle.write(chunk, 0, chunk.length, offset);
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** sha256 of a file, computed here, independently of the image store and its meta files. */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: BLOCK })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
