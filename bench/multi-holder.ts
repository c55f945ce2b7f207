/*
 * One copy from several verified holders at once (issue 27): every source node's reads capped at
 * 16 MiB/s (NODE_READ_BPS), the destination's writes at 64 MiB/s (NODE_WRITE_BPS), one 64 MiB image held
 * by k = 1, 2 or 4 nodes, copied to one destination by the conductor's copy composition (CopyWorkflow,
 * SourceSelector, holder index, node-local locks, NodeBandwidth; in-process, no broker, fsync off). The
 * baseline is the single-holder copy (k = 1) of the same run; rounds interleave k = 1, 2, 4.
 * Run: npm run bench:multi [-- --rounds 3]   (writes bench/results/multi-holder.json)
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ImageStore } from '@app/image-store';
import { NodeLockManager, newAttemptId } from '@app/locking';
import { CopyWorkflow, ImageHolderIndex, NodeBandwidth, SourceSelector } from '../apps/conductor/src';
import { median, round, spread } from './bench-stats';
import { writeResults } from './support/bench-cell';
import { writeRandomFile } from './support/random-file';

const MiB = 1024 * 1024;
const IMAGE_MIB = 64;
const READ_MIBPS = 16;
const WRITE_MIBPS = 64;
const HOLDERS = [1, 2, 4];
const none = { fallback: 0, nodes: {} };

export async function runMultiHolderBench(options: { rounds?: number } = {}) {
  const rounds = options.rounds ?? 3;
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-bench-multi-'));
  const store = new ImageStore({ root, fsync: false });
  const holders = ['h1', 'h2', 'h3', 'h4'];
  for (const node of [...holders, 'dst']) await store.markers.registerNode(node, 'bench');
  // One image per k, on exactly k holders.
  for (const k of HOLDERS) {
    const file = path.join(root, '.bench-image');
    await writeRandomFile(file, IMAGE_MIB * MiB);
    await store.imports.importImage('h1', `img-${k}`, file);
    await fsp.rm(file);
    for (const node of holders.slice(1, k))
      await store.copies.copyImage({
        imageId: `img-${k}`,
        source: 'h1',
        destination: node,
        attemptId: newAttemptId(),
      });
  }
  const locks = new NodeLockManager({ root, conductorId: 'bench', requireNodeFolder: true });
  const index = new ImageHolderIndex(store.entries);
  const selector = new SourceSelector(store, { index, readLimit: 4, conductorId: 'bench' });
  const bandwidth = new NodeBandwidth({
    read: { fallback: READ_MIBPS * MiB, nodes: {} },
    write: { fallback: WRITE_MIBPS * MiB, nodes: {} },
    backgroundRead: none,
    backgroundWrite: none,
  });
  const read: string[][] = [];
  const log = {
    warn: (fields: object, message: string) => process.stderr.write(`${message} ${JSON.stringify(fields)}\n`),
    debug: (fields: { helpers?: string[] }, message: string) => {
      if (message === 'reading from several holders') read.push(fields.helpers ?? []);
    },
  };
  const workflow = new CopyWorkflow(store, locks, selector, { lockWaitMs: 60_000, log, bandwidth });
  const ms: Record<number, number[]> = Object.fromEntries(HOLDERS.map((k) => [k, []]));
  const helpers: Record<number, number[]> = Object.fromEntries(HOLDERS.map((k) => [k, []]));
  const loadBefore = os.loadavg();
  try {
    for (let r = 0; r < rounds; r++)
      for (const k of HOLDERS) {
        await store.entries.deleteImage('dst', `img-${k}`);
        read.length = 0;
        const started = performance.now();
        const result = await workflow.run(
          { imageId: `img-${k}`, destination: 'dst' },
          { attemptId: newAttemptId() },
        );
        ms[k]!.push(performance.now() - started);
        if (result.status !== 'completed') throw new Error(`copy of img-${k}: ${JSON.stringify(result)}`);
        helpers[k]!.push(read[0]?.length ?? 0);
      }
  } finally {
    await locks.releaseAll();
    await fsp.rm(root, { recursive: true, force: true });
  }
  const loadAfter = os.loadavg();
  const rows = HOLDERS.map((k) => {
    const ratios = ms[1]!.map((single, i) => single / ms[k]![i]!);
    return {
      holders: k,
      helpersUsed: helpers[k],
      ms: round(median(ms[k]!), 0),
      msSpread: `${round(spread(ms[k]!).min, 0)}..${round(spread(ms[k]!).max, 0)}`,
      fasterThanOneHolder: round(median(ratios), 2),
      ratioSpread: `${round(spread(ratios).min, 2)}..${round(spread(ratios).max, 2)}`,
      ideal: Math.min(k, WRITE_MIBPS / READ_MIBPS),
    };
  });
  const report = {
    scenario: `one ${IMAGE_MIB} MiB image to one destination, sources read-capped at ${READ_MIBPS} MiB/s, destination write cap ${WRITE_MIBPS} MiB/s`,
    date: new Date().toISOString(),
    rounds,
    loadAverage: { before: loadBefore.map((x) => round(x, 2)), after: loadAfter.map((x) => round(x, 2)) },
    rows,
  };
  console.log(JSON.stringify(report, null, 2));
  await writeResults('multi-holder', report);
  return report;
}

if (require.main === module) {
  const i = process.argv.indexOf('--rounds');
  runMultiHolderBench({ rounds: i > 0 ? Number(process.argv[i + 1]) : undefined }).catch((error: unknown) => {
    process.stderr.write(`multi-holder: ${String(error)}\n`);
    process.exit(1);
  });
}
