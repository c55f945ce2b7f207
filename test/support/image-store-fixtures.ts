import type { CopyResult } from '@app/contracts';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';

const MiB = 1024 * 1024;

/**
 * Writes `bytes` bytes of random-looking data fast: one random 1 MiB block, with each copy stamped with
 * its block index so that no two blocks are equal (a copy that swapped or repeated chunks must not
 * hash the same). Returns the sha256.
 */
export async function writeRandomFile(file: string, bytes: number): Promise<string> {
  const block = randomBytes(MiB);
  const hash = createHash('sha256');
  const handle = await fsp.open(file, 'w');
  try {
    for (let offset = 0, index = 0; offset < bytes; offset += MiB, index += 1) {
      block.writeUInt32BE(index, 0);
      const chunk = block.subarray(0, Math.min(MiB, bytes - offset));
      hash.update(chunk);
      await handle.write(chunk, 0, chunk.length, offset);
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** Hashes a file independently of the code under test. */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The sha256 of each `pieceBytes` piece of a file, read whole: independent of the code under test. */
export async function pieceDigestsOfFile(file: string, pieceBytes: number): Promise<string[]> {
  const bytes = await fsp.readFile(file);
  const digests: string[] = [];
  for (let start = 0; start < bytes.length; start += pieceBytes)
    digests.push(
      createHash('sha256')
        .update(bytes.subarray(start, start + pieceBytes))
        .digest('hex'),
    );
  return digests;
}

/** Names in a folder; [] when the folder does not exist. */
export async function listDir(dir: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

export async function exists(file: string): Promise<boolean> {
  try {
    await fsp.lstat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Runs `promise`, expecting a rejection, and returns the error for assertions. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject, but it resolved');
}

export const MEBIBYTE = MiB;

/** A final `completed` answer for `requestId`, for the specs of recorded answers. */
export function completedResult(requestId: string, overrides: Partial<CopyResult> = {}): CopyResult {
  return {
    v: 1,
    type: 'result',
    requestId,
    status: 'completed',
    attempt: 1,
    durations: { totalMs: 5 },
    conductorId: 'c-1',
    at: '2026-01-01T00:00:00.000Z',
    ...overrides,
  };
}
