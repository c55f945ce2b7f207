import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';

const MiB = 1024 * 1024;

/** Writes `bytes` random bytes to `file`, 1 MiB at a time (images of any size, flat memory). */
export async function writeRandomFile(file: string, bytes: number): Promise<void> {
  const block = randomBytes(MiB);
  const handle = await fsp.open(file, 'w');
  try {
    for (let offset = 0, index = 0; offset < bytes; offset += MiB, index += 1) {
      block.writeUInt32BE(index, 0); // no two chunks alike
      await handle.write(block, 0, Math.min(MiB, bytes - offset), offset);
    }
  } finally {
    await handle.close();
  }
}
