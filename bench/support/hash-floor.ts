import { createHash, randomBytes } from 'node:crypto';

const MiB = 1024 * 1024;

/**
 * The floor of any verified copy: sha256 over `bytes` bytes of one in-memory buffer, no I/O (one sha256
 * stream is sequential, whatever the threads). In milliseconds.
 */
export function hashOnlyMs(bytes: number): number {
  const chunk = randomBytes(MiB);
  const started = performance.now();
  const hash = createHash('sha256');
  for (let done = 0; done < bytes; done += chunk.length) hash.update(chunk);
  hash.digest();
  return performance.now() - started;
}
