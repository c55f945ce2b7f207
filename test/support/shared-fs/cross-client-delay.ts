import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

/**
 * How long an mtime change made through mount `writer` takes to show through mount `reader` (two clients
 * of one file system), `samples` times on fresh files: what a waiter on another host sees of a heartbeat.
 * Each look at the reader is a stat; gives up on a sample after `giveUpMs`. Sorted, in ms.
 */
export async function crossClientDelays(
  writer: string,
  reader: string,
  samples: number,
  giveUpMs = 10_000,
): Promise<number[]> {
  const delays: number[] = [];
  const folder = `.delay-${process.pid}-${Date.now()}`;
  await fsp.mkdir(path.join(writer, folder));
  try {
    for (let i = 0; i < samples; i++) {
      const name = path.join(folder, `f${i}`);
      await fsp.writeFile(path.join(writer, name), '');
      const before = (await fsp.stat(path.join(reader, name))).mtimeMs; // the reader caches what it saw
      const changed = Math.floor(before / 1000) * 1000 - 7_000;
      const started = performance.now();
      await fsp.utimes(path.join(writer, name), changed / 1000, changed / 1000);
      for (;;) {
        const elapsed = performance.now() - started;
        if (Math.abs((await fsp.stat(path.join(reader, name))).mtimeMs - changed) < 1) {
          delays.push(Math.round(elapsed));
          break;
        }
        if (elapsed > giveUpMs) {
          delays.push(Infinity);
          break;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    }
  } finally {
    await fsp.rm(path.join(writer, folder), { recursive: true, force: true });
  }
  return delays.sort((a, b) => a - b);
}

/** min / p50 / max of sorted figures, for reports. */
export function spread(sorted: number[]): { min: number; p50: number; max: number } {
  return { min: sorted[0]!, p50: sorted[Math.floor(sorted.length / 2)]!, max: sorted[sorted.length - 1]! };
}
