/*
 * Big copy: a 1 GiB image, request -> verified, published image through a conductor, against a raw
 * fs.copyFile and a plain `cp` of the same file in the same run, repeated. Also the conductor process's
 * RSS growth during the copy (sampled from /proc). And the floor no verified copy can beat: sha256 of the
 * same number of bytes already in memory (one hash stream is sequential, whatever the threads). The
 * target is against the machine's limit for a verified copy, max(sha256 only, fs.copyFile), each round;
 * since ours also fsyncs the image before publishing it, it is reported against the limit of a durable
 * verified copy too, max(sha256 only, fs.copyFile + fsync).
 * Run: npm run bench:big-copy [-- --size-mib 1024 --rounds 5]   (writes bench/results/big-copy.json)
 */
import { execFile } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { numberFlag } from './support/cli-args';
import { hashOnlyMs } from './support/hash-floor';
import { median, round, spread } from './bench-stats';
import { BenchRequester, withCell, writeResults } from './support/bench-cell';

const run = promisify(execFile);
const MiB = 1024 * 1024;

function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

export async function runBigCopyBench(options: { sizeMiB?: number; rounds?: number } = {}) {
  const sizeMiB = options.sizeMiB ?? 1024;
  const rounds = options.rounds ?? 5;
  const ours: number[] = [];
  const copyFile: number[] = [];
  const cp: number[] = [];
  const hashOnly: number[] = [];
  const copyFileDurable: number[] = [];
  const rssGrowth: number[] = [];
  await withCell(['node-a', 'node-b'], async (cell, startConductor) => {
    const image = await cell.seed('node-a', 'big.img', sizeMiB * MiB);
    const conductor = await startConductor({ COPY_CONCURRENCY: '1' });
    const client = await BenchRequester.open();
    const source = cell.store.entries.imagePath('node-a', 'big.img');
    const scratch = path.join(cell.root, 'scratch');
    await fsp.mkdir(scratch);
    try {
      for (let r = 0; r < rounds; r++) {
        await fsp.rm(cell.store.entries.imagePath('node-b', 'big.img'), { force: true });
        await fsp.rm(cell.store.entries.metaPath('node-b', 'big.img'), { force: true });
        const before = rssOf(conductor.pid);
        let peak = before;
        const sampler = setInterval(() => (peak = Math.max(peak, rssOf(conductor.pid))), 50);
        ours.push(
          await timed(async () => {
            const id = client.send(cell.topology.requestQueue.name, {
              v: 1,
              requestId: `big-${r}`,
              imageId: 'big.img',
              source: 'node-a',
              destination: 'node-b',
              sha256: image.sha256,
            });
            const reply = await client.finalReply(id, 600_000);
            if (reply.status !== 'completed') throw new Error(`copy failed: ${JSON.stringify(reply)}`);
          }),
        );
        clearInterval(sampler);
        rssGrowth.push(peak - before);
        copyFile.push(await timed(() => fsp.copyFile(source, path.join(scratch, `copyfile-${r}`))));
        cp.push(await timed(() => run('cp', [source, path.join(scratch, `cp-${r}`)])));
        hashOnly.push(hashOnlyMs(sizeMiB * MiB));
        // What a durable publish must do at least: the copy, then its bytes on disk (ours fsyncs too).
        copyFileDurable.push(
          await timed(async () => {
            const copy = path.join(scratch, `durable-${r}`);
            await fsp.copyFile(source, copy);
            const handle = await fsp.open(copy, 'r+');
            await handle.sync();
            await handle.close();
          }),
        );
        await fsp.rm(scratch, { recursive: true, force: true });
        await fsp.mkdir(scratch);
      }
    } finally {
      await client.close();
    }
  });
  const ratio = (base: number[]) => ours.map((o, i) => base[i]! / o);
  // The machine's limit for a verified copy, per round: it cannot beat the disk's copy nor one sha256 stream.
  const limit = ours.map((_, i) => Math.max(hashOnly[i]!, copyFile[i]!));
  const overLimit = ours.map((o, i) => o / limit[i]!);
  // Ours also makes the image durable before publishing it: the limit of a durable verified copy.
  const durableLimit = ours.map((_, i) => Math.max(hashOnly[i]!, copyFileDurable[i]!));
  const overDurableLimit = ours.map((o, i) => o / durableLimit[i]!);
  const report = {
    scenario: `${sizeMiB} MiB image: request -> verified published image vs raw copies`,
    date: new Date().toISOString(),
    rounds,
    oursMs: round(median(ours), 0),
    oursSpreadMs: spread(ours.map((x) => round(x, 0))),
    machineLimitMs: round(median(limit), 0),
    vsMachineLimit: round(median(overLimit), 2),
    vsMachineLimitSpread: spread(overLimit.map((x) => round(x, 2))),
    durableLimitMs: round(median(durableLimit), 0),
    vsDurableLimit: round(median(overDurableLimit), 2),
    vsDurableLimitSpread: spread(overDurableLimit.map((x) => round(x, 2))),
    copyFileMs: round(median(copyFile), 0),
    cpMs: round(median(cp), 0),
    ratioVsCopyFile: round(median(ratio(copyFile)), 2),
    ratioVsCopyFileSpread: spread(ratio(copyFile).map((x) => round(x, 2))),
    ratioVsCp: round(median(ratio(cp)), 2),
    copyFileFsyncMs: round(median(copyFileDurable), 0),
    ratioVsCopyFileFsync: round(median(ratio(copyFileDurable)), 2),
    // The best ratio any copy that hashes every byte could reach here, and how near to that floor we are.
    sha256OnlyMs: round(median(hashOnly), 0),
    ceilingVsCopyFile: round(median(copyFile.map((c, i) => c / hashOnly[i]!)), 2),
    oursVsHashFloor: round(median(ours.map((o, i) => hashOnly[i]! / o)), 2),
    conductorRssGrowthMiB: round(median(rssGrowth) / MiB, 1),
    conductorRssGrowthMaxMiB: round(Math.max(...rssGrowth) / MiB, 1),
    targets: { vsMachineLimit: '<= 1.1 (ours / max(sha256 only, copyFile))', rssGrowth: '<= 64 MiB' },
  };
  console.table([report]);
  await writeResults('big-copy', report);
  return report;
}

if (require.main === module) {
  void runBigCopyBench({ sizeMiB: numberFlag('--size-mib'), rounds: numberFlag('--rounds') });
}
