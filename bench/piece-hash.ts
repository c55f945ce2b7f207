/*
 * What the piece list costs a copy: the copy loop (copyChunks: read, sha256, write) over one file with and
 * without hashing each 4 MiB piece beside the whole image (PIECE_BYTES), interleaved in each round, on the
 * main thread, no fsync (what is compared is the loop against the page cache, not the disk's flush). Per
 * copy the wall time and the process's CPU time (user + system, and user alone, every thread): on a loaded
 * machine the wall time says little, the user CPU says what the hashing costs. Also the floor: sha256 of
 * the same bytes in memory, alone and with the piece digests. Ratios are against the copy without pieces
 * of the same round.
 * Run: npm run build && node dist/bench/piece-hash.js [--size-mib 1024] [--rounds 6]
 * (writes bench/results/piece-hash.json)
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PIECE_BYTES, PieceHasher, copyChunks, fileHandleIo } from '@app/image-store';
import { median, round, spread } from './bench-stats';
import { numberFlag } from './support/cli-args';
import { writeRandomFile } from './support/random-file';
import { writeResults } from './support/bench-cell';

const MiB = 1024 * 1024;

interface Cost {
  wallMs: number;
  /** User + system CPU of every thread of the process. */
  cpuMs: number;
  /** User CPU only: where hashing shows (system time is the file system's, and varies with the load). */
  userMs: number;
}

async function measured(fn: () => Promise<unknown> | unknown): Promise<Cost> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await fn();
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { wallMs, cpuMs: (used.user + used.system) / 1000, userMs: used.user / 1000 };
}

async function copyOnce(source: string, target: string, pieces: boolean): Promise<Cost> {
  execFileSync('sync');
  const from = await fsp.open(source, 'r');
  const to = await fsp.open(target, 'w');
  try {
    return await measured(() =>
      copyChunks({
        io: fileHandleIo(from, to),
        readError: (error) => error,
        writeError: (error) => error,
        describe: 'bench copy',
        ...(pieces ? { pieceBytes: PIECE_BYTES } : {}),
      }),
    );
  } finally {
    await from.close();
    await to.close();
    await fsp.rm(target);
  }
}

/** sha256 over `bytes` in memory, in 1 MiB chunks as the copy feeds it, with or without piece digests. */
function hashOnce(block: Buffer, bytes: number, pieces: boolean): Promise<Cost> {
  return measured(() => {
    const hash = createHash('sha256');
    const hasher = pieces ? new PieceHasher(PIECE_BYTES) : undefined;
    for (let done = 0; done < bytes; done += block.length) {
      hash.update(block);
      hasher?.update(block);
    }
    hash.digest('hex');
    hasher?.finish();
  });
}

function row(name: string, sizeMiB: number, without: Cost[], withPieces: Cost[]) {
  const wallRatio = withPieces.map((c, i) => c.wallMs / without[i]!.wallMs);
  const cpuRatio = withPieces.map((c, i) => c.cpuMs / without[i]!.cpuMs);
  const userRatio = withPieces.map((c, i) => c.userMs / without[i]!.userMs);
  const extraUserPerGiB = withPieces.map((c, i) => ((c.userMs - without[i]!.userMs) * 1024) / sizeMiB);
  return {
    name,
    withoutWallMs: round(median(without.map((c) => c.wallMs)), 0),
    withWallMs: round(median(withPieces.map((c) => c.wallMs)), 0),
    wallRatio: round(median(wallRatio), 2),
    wallRatioSpread: spread(wallRatio.map((r) => round(r, 2))),
    withoutCpuMs: round(median(without.map((c) => c.cpuMs)), 0),
    withoutUserMs: round(median(without.map((c) => c.userMs)), 0),
    withCpuMs: round(median(withPieces.map((c) => c.cpuMs)), 0),
    cpuRatio: round(median(cpuRatio), 2),
    cpuRatioSpread: spread(cpuRatio.map((r) => round(r, 2))),
    userRatio: round(median(userRatio), 2),
    userRatioSpread: spread(userRatio.map((r) => round(r, 2))),
    extraUserMsPerGiB: round(median(extraUserPerGiB), 0),
    extraUserMsPerGiBSpread: spread(extraUserPerGiB.map((r) => round(r, 0))),
  };
}

export async function runPieceHashBench(options: { sizeMiB?: number; rounds?: number } = {}) {
  const sizeMiB = options.sizeMiB ?? 1024;
  const rounds = options.rounds ?? 6;
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-bench-pieces-'));
  const copies = { without: [] as Cost[], with: [] as Cost[] };
  const hashes = { without: [] as Cost[], with: [] as Cost[] };
  const block = randomBytes(MiB);
  try {
    const source = path.join(dir, 'source.img');
    await writeRandomFile(source, sizeMiB * MiB);
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first, so that neither always meets the other's dirty pages.
      for (const pieces of r % 2 === 0 ? [false, true] : [true, false])
        copies[pieces ? 'with' : 'without'].push(await copyOnce(source, path.join(dir, 'copy.img'), pieces));
      for (const pieces of r % 2 === 0 ? [false, true] : [true, false])
        hashes[pieces ? 'with' : 'without'].push(await hashOnce(block, sizeMiB * MiB, pieces));
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  const rows = [
    row('copy loop (read, hash, write)', sizeMiB, copies.without, copies.with),
    row('sha256 in memory only', sizeMiB, hashes.without, hashes.with),
  ];
  const report = {
    scenario: `${sizeMiB} MiB: copy loop and hash floor without and with 4 MiB piece digests`,
    date: new Date().toISOString(),
    rounds,
    pieceBytes: PIECE_BYTES,
    rows,
  };
  console.table(
    rows.map((r) => ({
      name: r.name,
      wallRatio: `${r.wallRatio} (${r.wallRatioSpread.min}..${r.wallRatioSpread.max})`,
      cpuRatio: `${r.cpuRatio} (${r.cpuRatioSpread.min}..${r.cpuRatioSpread.max})`,
      userRatio: `${r.userRatio} (${r.userRatioSpread.min}..${r.userRatioSpread.max})`,
      extraUserMsPerGiB: `${r.extraUserMsPerGiB} (${r.extraUserMsPerGiBSpread.min}..${r.extraUserMsPerGiBSpread.max})`,
      withoutUserMs: r.withoutUserMs,
    })),
  );
  await writeResults('piece-hash', report);
  return report;
}

if (require.main === module) {
  void runPieceHashBench({ sizeMiB: numberFlag('--size-mib'), rounds: numberFlag('--rounds') });
}
