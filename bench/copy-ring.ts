/*
 * How deep a copy reads ahead: the copy loop (copyChunks: read, sha256, write) over one 1 GiB file with
 * rings of 2, 3 and 4 buffers, interleaved in each round, on the main thread, no fsync (so what is
 * compared is the loop against the page cache, not the disk's flush). A `sync` before each copy starts
 * every one with no dirty pages of the last. Ratios are against the 2-buffer ring of the same round.
 * Run: npm run build && node dist/bench/copy-ring.js [--size-mib 1024] [--rounds 6]
 * (writes bench/results/copy-ring.json)
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { COPY_BUFFERS, copyChunks, fileHandleIo } from '@app/image-store';
import { median, round, spread } from './bench-stats';
import { numberFlag } from './support/cli-args';
import { writeRandomFile } from './support/random-file';
import { writeResults } from './support/bench-cell';

const MiB = 1024 * 1024;
const RINGS = [2, 3, 4];

async function copyOnce(source: string, target: string, buffers: number): Promise<number> {
  execFileSync('sync');
  const from = await fsp.open(source, 'r');
  const to = await fsp.open(target, 'w');
  try {
    const started = performance.now();
    await copyChunks({
      io: fileHandleIo(from, to),
      buffers,
      readError: (error) => error,
      writeError: (error) => error,
      describe: 'bench copy',
    });
    return performance.now() - started;
  } finally {
    await from.close();
    await to.close();
    await fsp.rm(target);
  }
}

export async function runCopyRingBench(options: { sizeMiB?: number; rounds?: number } = {}) {
  const sizeMiB = options.sizeMiB ?? 1024;
  const rounds = options.rounds ?? 6;
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-bench-ring-'));
  const times = new Map<number, number[]>(RINGS.map((r) => [r, []]));
  try {
    const source = path.join(dir, 'source.img');
    await writeRandomFile(source, sizeMiB * MiB);
    for (let r = 0; r < rounds; r++)
      for (const buffers of RINGS)
        times.get(buffers)!.push(await copyOnce(source, path.join(dir, 'copy.img'), buffers));
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  const base = times.get(2)!;
  const rows = RINGS.map((buffers) => {
    const ms = times.get(buffers)!;
    const speedup = ms.map((m, i) => base[i]! / m);
    return {
      buffers,
      default: buffers === COPY_BUFFERS,
      medianMs: round(median(ms), 0),
      spreadMs: spread(ms.map((m) => round(m, 0))),
      speedupVs2: round(median(speedup), 2),
      speedupVs2Spread: spread(speedup.map((s) => round(s, 2))),
    };
  });
  const report = {
    scenario: `copy loop over ${sizeMiB} MiB, rings of 2..4 buffers`,
    date: new Date().toISOString(),
    rounds,
    rows,
  };
  console.table(
    rows.map(({ spreadMs, speedupVs2Spread, ...rest }) => ({
      ...rest,
      spreadMs: `${spreadMs.min}..${spreadMs.max}`,
      speedupVs2Spread: `${speedupVs2Spread.min}..${speedupVs2Spread.max}`,
    })),
  );
  await writeResults('copy-ring', report);
  return report;
}

if (require.main === module) {
  void runCopyRingBench({ sizeMiB: numberFlag('--size-mib'), rounds: numberFlag('--rounds') });
}
