/*
 * Copy throughput and memory: ImageStore.copies.copyImage (stream + sha256 + fsync + rename + meta) against a raw
 * fs.promises.copyFile of the same image in the same run, sampling RSS every 50 ms during our copy.
 * Run: npm run build && node dist/bench/copy-memory.js [--size-mib 1024] [--rounds 3]
 * (writes bench/results/copy-memory.json)
 *
 * Both copies read the source from the page cache (it was just written), so this compares the copy paths,
 * not the disk's read speed. The raw baseline is reported with and without an fsync of the copy, since
 * ours always fsyncs before publishing. And the pipeline alone: the same copy in copy workers (as the
 * conductor runs it) with fsync off, against the limit of any verified copy, max(sha256 only, copyFile):
 * what is left of the gap once the disk's flush is out of it.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { COPY_CHUNK_BYTES, ImageStore } from '@app/image-store';
import { hashOnlyMs } from './support/hash-floor';
import { median, round, spread } from './bench-stats';

const MiB = 1024 * 1024;
const SAMPLE_EVERY_MS = 50;
const IMAGE = 'bench-image.raw';

interface RoundResult {
  oursMs: number;
  /** Copy workers, fsync off. */
  pipelineMs: number;
  hashOnlyMs: number;
  rawCopyMs: number;
  rawFsyncMs: number;
  rssBeforeBytes: number;
  peakRssGrowthBytes: number;
  samples: number;
}

/** Random-looking data written fast: one random 1 MiB block, stamped with its index so blocks differ. */
async function writeImage(file: string, bytes: number): Promise<void> {
  const block = randomBytes(MiB);
  const handle = await fsp.open(file, 'w');
  try {
    for (let offset = 0, index = 0; offset < bytes; offset += MiB, index += 1) {
      block.writeUInt32BE(index, 0);
      await handle.write(block, 0, Math.min(MiB, bytes - offset), offset);
    }
  } finally {
    await handle.close();
  }
}

/** Samples RSS on a timer while `work` runs; the copy yields to the event loop between chunks. */
async function withRssSampling<T>(
  work: () => Promise<T>,
): Promise<{ result: T; before: number; peak: number; samples: number }> {
  const before = process.memoryUsage.rss();
  let peak = before;
  let samples = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
    samples += 1;
  }, SAMPLE_EVERY_MS);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, before, peak, samples };
  } finally {
    clearInterval(timer);
  }
}

async function pipelineRound(store: ImageStore, round: number): Promise<number> {
  const destination = `node-p${round}`;
  await store.markers.registerNode(destination, 'bench');
  const started = performance.now();
  const outcome = await store.copies.copyImage({
    imageId: IMAGE,
    source: 'node-a',
    destination,
    attemptId: `bench-p${round}`,
  });
  const ms = performance.now() - started;
  if (outcome.status !== 'copied') throw new Error(`expected a copy, got ${outcome.status}`);
  await fsp.rm(store.nodeLayout(destination).dir, { recursive: true });
  return ms;
}

async function oneRound(
  store: ImageStore,
  pipeline: ImageStore,
  root: string,
  round: number,
  size: number,
): Promise<RoundResult> {
  const destination = `node-b${round}`;
  await store.markers.registerNode(destination, 'bench');
  const started = performance.now();
  const sampled = await withRssSampling(() =>
    store.copies.copyImage({ imageId: IMAGE, source: 'node-a', destination, attemptId: `bench-${round}` }),
  );
  const oursMs = performance.now() - started;
  if (sampled.result.status !== 'copied') throw new Error(`expected a copy, got ${sampled.result.status}`);
  await fsp.rm(store.nodeLayout(destination).dir, { recursive: true });

  const rawTarget = path.join(root, `raw-${round}.img`);
  const rawStarted = performance.now();
  await fsp.copyFile(store.entries.imagePath('node-a', IMAGE), rawTarget);
  const rawCopyMs = performance.now() - rawStarted;
  const handle = await fsp.open(rawTarget, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  const rawFsyncMs = performance.now() - rawStarted;
  await fsp.rm(rawTarget);

  const pipelineMs = await pipelineRound(pipeline, round);
  return {
    oursMs,
    pipelineMs,
    hashOnlyMs: hashOnlyMs(size),
    rawCopyMs,
    rawFsyncMs,
    rssBeforeBytes: sampled.before,
    peakRssGrowthBytes: sampled.peak - sampled.before,
    samples: sampled.samples,
  };
}

export async function runCopyMemoryBench(options: { sizeMiB?: number; rounds?: number } = {}) {
  const sizeMiB = options.sizeMiB ?? 1024;
  const rounds = options.rounds ?? 3;
  const size = sizeMiB * MiB;
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-bench-copy-'));
  try {
    const store = new ImageStore({ root });
    await store.markers.registerNode('node-a', 'bench');
    const staging = path.join(root, 'staging.img');
    await writeImage(staging, size);
    await store.imports.importImage('node-a', IMAGE, staging);
    await fsp.rm(staging);

    const pipeline = new ImageStore({ root, fsync: false, copyWorkers: os.availableParallelism() });
    const results: RoundResult[] = [];
    try {
      for (let r = 0; r < rounds; r += 1) results.push(await oneRound(store, pipeline, root, r, size));
    } finally {
      await pipeline.close();
    }
    const pipelineMs = median(results.map((x) => x.pipelineMs));
    const pipelineOverLimit = results.map((x) => x.pipelineMs / Math.max(x.hashOnlyMs, x.rawCopyMs));

    const oursMs = median(results.map((x) => x.oursMs));
    const rawCopyMs = median(results.map((x) => x.rawCopyMs));
    const rawFsyncMs = median(results.map((x) => x.rawFsyncMs));
    const toMiB = (bytes: number) => round(bytes / MiB, 1);
    const report = {
      scenario: 'ImageStore.copies.copyImage vs fs.promises.copyFile, same image, same run',
      date: new Date().toISOString(),
      node: process.version,
      sizeBytes: size,
      rounds,
      chunkBytes: COPY_CHUNK_BYTES,
      ours: { ms: round(oursMs, 1), MiBps: round(sizeMiB / (oursMs / 1000), 1) },
      rawCopyFile: { ms: round(rawCopyMs, 1), MiBps: round(sizeMiB / (rawCopyMs / 1000), 1) },
      rawCopyFileFsync: { ms: round(rawFsyncMs, 1), MiBps: round(sizeMiB / (rawFsyncMs / 1000), 1) },
      ratioVsCopyFile: round(oursMs / rawCopyMs, 2),
      ratioVsCopyFileFsync: round(oursMs / rawFsyncMs, 2),
      pipelineNoFsync: { ms: round(pipelineMs, 1), copyWorkers: os.availableParallelism() },
      hashOnlyMs: round(median(results.map((x) => x.hashOnlyMs)), 1),
      pipelineVsLimit: round(median(pipelineOverLimit), 2),
      pipelineVsLimitSpread: spread(pipelineOverLimit.map((x) => round(x, 2))),
      rssBeforeMiB: toMiB(results[0]!.rssBeforeBytes),
      peakRssGrowthMiB: toMiB(Math.max(...results.map((x) => x.peakRssGrowthBytes))),
      rssSamples: results.map((x) => x.samples),
      perRound: results.map((x) => ({
        oursMs: round(x.oursMs, 1),
        pipelineMs: round(x.pipelineMs, 1),
        hashOnlyMs: round(x.hashOnlyMs, 1),
        rawCopyMs: round(x.rawCopyMs, 1),
        rawFsyncMs: round(x.rawFsyncMs, 1),
        peakRssGrowthMiB: toMiB(x.peakRssGrowthBytes),
      })),
    };
    console.table({
      [`copy of ${sizeMiB} MiB (median of ${rounds})`]: {
        'ours ms': report.ours.ms,
        'raw copyFile ms': report.rawCopyFile.ms,
        'raw +fsync ms': report.rawCopyFileFsync.ms,
        ratio: report.ratioVsCopyFileFsync,
        'workers, no fsync ms': report.pipelineNoFsync.ms,
        'vs max(sha256, copyFile)': report.pipelineVsLimit,
        'RSS before MiB': report.rssBeforeMiB,
        'peak RSS growth MiB': report.peakRssGrowthMiB,
      },
    });
    const resultsDir = path.join(__dirname, '..', '..', 'bench', 'results');
    await fsp.mkdir(resultsDir, { recursive: true });
    await fsp.writeFile(path.join(resultsDir, 'copy-memory.json'), JSON.stringify(report, null, 2) + '\n');
    return report;
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
}

function numberArg(name: string): number | undefined {
  const index = process.argv.indexOf(name);
  if (index === -1) return undefined;
  const value = Number(process.argv[index + 1]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} needs a positive integer`);
  return value;
}

export async function main(): Promise<void> {
  await runCopyMemoryBench({ sizeMiB: numberArg('--size-mib'), rounds: numberArg('--rounds') });
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
