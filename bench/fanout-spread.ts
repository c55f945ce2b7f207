/*
 * What spreading a fan-out over fresh holders is worth when every node's read bandwidth is limited.
 * One image on `origin`, copied to 16 nodes at once, in-process (the conductor's CopyWorkflow, SourceSelector,
 * holder index and locks on a real temp folder, no broker), with every node's reads throttled to the same
 * bandwidth (bench/support/throttled-reads.ts, benchmark only). Baseline, measured in the same round: the
 * same copies with the source named (`origin`), so every byte comes from one node. Ours: no source named,
 * NODE_READ_LIMIT 1, 2 and 4 (the default). Theory for N destinations, image S, bandwidth B per node:
 * single source N*S/B; a doubling tree (limit 1) about ceil(log2(N+1))*S/B.
 * Then, in the same run, the one-copy-time scenario of issue 27 (fanout-one-copy.ts: 16 and 64 nodes,
 * reads and writes capped by NodeBandwidth, against one copy), on a temp folder of its own.
 * Run: npm run bench:fanout [-- --rounds 3 --pieces on|off --nodes 16,64 --conductors 1]
 *   (writes bench/results/fanout-spread.json; --rounds: both scenarios, default 5 here and 3 there)
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ImageStore } from '@app/image-store';
import { NodeLockManager, newAttemptId } from '@app/locking';
import { CopyWorkflow, ImageHolderIndex, SourceSelector } from '../apps/conductor/src';
import { writeRandomFile } from './support/random-file';
import { median, round, spread } from './bench-stats';
import { installReadThrottle } from './support/throttled-reads';
import { writeResults } from './support/bench-cell';
import { flagValue, numberFlag } from './support/cli-args';
import { type OneCopyOptions, parseOneCopyFlags, runOneCopyFanout } from './fanout-one-copy';

const MiB = 1024 * 1024;
const DESTINATIONS = 16;
const IMAGE_MIB = 4;
const NODE_MIB_PER_S = 16;
const READ_LIMITS = [1, 2, 4];
const IMAGE = 'golden.qcow2';

interface Run {
  ms: number;
  sources: number;
  readsPerSource: Record<string, number>;
  originPeakReaders: number;
}

const quiet = { warn: () => undefined, debug: () => undefined };

async function fanOut(
  root: string,
  destinations: string[],
  options: { namedSource: boolean; readLimit: number },
  throttle: ReturnType<typeof installReadThrottle>,
): Promise<Run> {
  const store = new ImageStore({ root, fsync: false });
  for (const node of destinations) {
    await fsp.rm(path.join(root, node), { recursive: true, force: true });
    await store.markers.registerNode(node, 'bench');
  }
  const locks = new NodeLockManager({ root, conductorId: 'bench' });
  const index = new ImageHolderIndex(store.entries);
  const selector = new SourceSelector(store, { index, readLimit: options.readLimit, conductorId: 'bench' });
  const workflow = new CopyWorkflow(store, locks, selector, { lockWaitMs: 600_000, log: quiet });
  throttle.reset();
  const started = performance.now();
  const results = await Promise.all(
    destinations.map((destination) =>
      workflow.run(
        { imageId: IMAGE, destination, ...(options.namedSource ? { source: 'origin' } : {}) },
        { attemptId: newAttemptId() },
      ),
    ),
  );
  const ms = performance.now() - started;
  const readsPerSource: Record<string, number> = {};
  for (const r of results) {
    if (r.status !== 'completed') throw new Error(`a copy did not complete: ${JSON.stringify(r)}`);
    readsPerSource[r.source!] = (readsPerSource[r.source!] ?? 0) + 1;
  }
  await locks.releaseAll();
  return {
    ms,
    sources: Object.keys(readsPerSource).length,
    readsPerSource,
    originPeakReaders: throttle.stats().origin?.peakReaders ?? 0,
  };
}

/** `oneCopy`: also the one-copy-time scenario (bench:fanout runs it; its fan-outs take N copy-times today). */
export async function runFanoutSpreadBench(options: { rounds?: number; oneCopy?: OneCopyOptions } = {}) {
  const rounds = options.rounds ?? 5;
  const loadBefore = os.loadavg();
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-bench-fanout-'));
  const destinations = Array.from({ length: DESTINATIONS }, (_, i) => `fan-${String(i).padStart(2, '0')}`);
  const throttle = installReadThrottle(root, NODE_MIB_PER_S * MiB);
  const single: Run[] = [];
  const spreading = new Map<number, Run[]>(READ_LIMITS.map((l) => [l, []]));
  try {
    const staging = path.join(root, '.staging');
    await writeRandomFile(staging, IMAGE_MIB * MiB);
    const seeding = new ImageStore({ root, fsync: false });
    await seeding.markers.registerNode('origin', 'bench');
    await seeding.imports.importImage('origin', IMAGE, staging);
    await fsp.rm(staging);
    for (let r = 0; r < rounds; r++) {
      // Alternate the order inside a round so neither side always runs on a warmer cache.
      const plan: Array<() => Promise<void>> = [
        async () =>
          void single.push(
            await fanOut(root, destinations, { namedSource: true, readLimit: DESTINATIONS }, throttle),
          ),
        ...READ_LIMITS.map(
          (limit) => async () =>
            void spreading
              .get(limit)!
              .push(await fanOut(root, destinations, { namedSource: false, readLimit: limit }, throttle)),
        ),
      ];
      if (r % 2 === 1) plan.reverse();
      for (const step of plan) await step();
      console.log(
        `round ${r + 1}/${rounds}: single ${round(single.at(-1)!.ms, 0)} ms; ${READ_LIMITS.map((l) => `limit ${l}: ${round(spreading.get(l)!.at(-1)!.ms, 0)} ms`).join(', ')}`,
      );
    }
  } finally {
    throttle.uninstall();
    await fsp.rm(root, { recursive: true, force: true });
  }
  const seconds = (IMAGE_MIB / NODE_MIB_PER_S) * 1000;
  const rows = READ_LIMITS.map((limit) => {
    const runs = spreading.get(limit)!;
    const ratios = runs.map((run, i) => single[i]!.ms / run.ms);
    return {
      scenario: `no source named, NODE_READ_LIMIT ${limit}${limit === 4 ? ' (default)' : ''}`,
      oursMs: round(median(runs.map((x) => x.ms)), 0),
      oursSpreadMs: spread(runs.map((x) => round(x.ms, 0))),
      singleSourceMs: round(median(single.map((x) => x.ms)), 0),
      speedup: round(median(ratios), 2),
      speedupSpread: spread(ratios.map((x) => round(x, 2))),
      sourcesUsed: median(runs.map((x) => x.sources)),
      originPeakReaders: median(runs.map((x) => x.originPeakReaders)),
      lastRunReadsPerSource: runs.at(-1)!.readsPerSource,
    };
  });
  const oneCopyTime = options.oneCopy ? await oneCopyScenario(options.oneCopy) : undefined;
  const loadAfter = os.loadavg();
  const report = {
    date: new Date().toISOString(),
    rounds,
    loadAverage: { before: loadBefore.map((x) => round(x, 2)), after: loadAfter.map((x) => round(x, 2)) },
    setup: {
      destinations: DESTINATIONS,
      imageMiB: IMAGE_MIB,
      perNodeReadMiBPerSecond: NODE_MIB_PER_S,
      theorySingleSourceMs: DESTINATIONS * seconds,
      theoryDoublingTreeMs: Math.ceil(Math.log2(DESTINATIONS + 1)) * seconds,
      how: 'in-process CopyWorkflow + SourceSelector + holder index + NodeLockManager on a temp folder; per-node read bandwidth by a benchmark-only fs.promises.open wrapper; all copies started at once',
    },
    singleSource: {
      medianMs: round(median(single.map((x) => x.ms)), 0),
      spreadMs: spread(single.map((x) => round(x.ms, 0))),
      originPeakReaders: median(single.map((x) => x.originPeakReaders)),
    },
    rows,
    ...(oneCopyTime ? { oneCopyTime } : {}),
  };
  console.table(
    rows.map(({ oursSpreadMs, speedupSpread, lastRunReadsPerSource: _reads, ...rest }) => ({
      ...rest,
      oursSpread: `${oursSpreadMs.min}..${oursSpreadMs.max}`,
      speedupSpread: `${speedupSpread.min}..${speedupSpread.max}`,
    })),
  );
  await writeResults('fanout-spread', report);
  return report;
}

/** On a temp folder of its own: the read throttle above is uninstalled by then, only NodeBandwidth caps. */
async function oneCopyScenario(options: OneCopyOptions) {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-bench-one-copy-'));
  try {
    return await runOneCopyFanout(new ImageStore({ root, fsync: false }), options);
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const started = performance.now();
  const rounds = numberFlag('--rounds');
  const flags = parseOneCopyFlags(flagValue('--pieces'), flagValue('--nodes'), flagValue('--conductors'));
  runFanoutSpreadBench({ rounds, oneCopy: { ...flags, rounds: rounds ?? 3 } })
    .then(() => console.log(`bench:fanout wall time ${round((performance.now() - started) / 1000, 1)} s`))
    .catch((error: unknown) => {
      process.stderr.write(`fanout-spread: ${String(error)}\n`);
      process.exit(1);
    });
}
