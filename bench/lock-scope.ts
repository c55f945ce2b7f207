/*
 * What the lock design is worth, each against its baseline in the same run, repeated:
 *  - no global lock: many small copies over 16 disjoint node pairs, two node-local locks vs one global lock;
 *  - shared source lock: one image fanned out to 16 nodes from one source, shared vs exclusive source lock.
 * The baselines are the same conductor with BENCH_LOCK_BASELINE set (benchmarks only).
 * Run: npm run bench:locks   (writes bench/results/lock-scope.json)
 */
import { promises as fsp } from 'node:fs';
import { median, round, spread } from './bench-stats';
import { RawAmqpClient, type TestCell, requestAll, withCell, writeResults } from './support/bench-cell';

const MiB = 1024 * 1024;
const PAIRS = 16;
const IMAGES_PER_PAIR = 4;
const FANOUT = 16;
const CONCURRENCY = 16;

type Baseline = 'none' | 'global-lock' | 'exclusive-source';

async function clearCopies(cell: TestCell, nodes: string[]): Promise<void> {
  for (const node of nodes) {
    const dir = cell.store.nodeLayout(node).images;
    await fsp.rm(dir, { recursive: true, force: true });
    await fsp.mkdir(dir, { recursive: true });
  }
}

async function timeRun(cell: TestCell, startConductor: (env?: Record<string, string>) => Promise<{ signal(s: NodeJS.Signals): void; exited(): Promise<unknown> }>, baseline: Baseline, bodies: object[]): Promise<number> {
  const conductor = await startConductor({ COPY_CONCURRENCY: String(CONCURRENCY), BENCH_LOCK_BASELINE: baseline, LOCK_WAIT_MS: '600000' });
  const client = await RawAmqpClient.open();
  try {
    const { ms, replies } = await requestAll(client, cell.topology.requestQueue.name, bodies);
    const failed = replies.filter((r) => r.status !== 'completed');
    if (failed.length > 0) throw new Error(`${failed.length} copies did not complete: ${JSON.stringify(failed[0])}`);
    return ms;
  } finally {
    await client.close();
    conductor.signal('SIGTERM');
    await conductor.exited();
  }
}

export async function runLockScopeBench(options: { rounds?: number } = {}) {
  const rounds = options.rounds ?? 5;
  const sources = Array.from({ length: PAIRS }, (_, i) => `src-${i}`);
  const destinations = Array.from({ length: PAIRS }, (_, i) => `dst-${i}`);
  const fanoutTargets = Array.from({ length: FANOUT }, (_, i) => `fan-${i}`);
  const disjoint: Record<Baseline, number[]> = { none: [], 'global-lock': [], 'exclusive-source': [] };
  const fanout: Record<Baseline, number[]> = { none: [], 'global-lock': [], 'exclusive-source': [] };
  await withCell(['origin', ...sources, ...destinations, ...fanoutTargets], async (cell, startConductor) => {
    for (let p = 0; p < PAIRS; p++)
      for (let k = 0; k < IMAGES_PER_PAIR; k++) await cell.seed(sources[p]!, `img-${k}`, 4 * MiB);
    await cell.seed('origin', 'golden', 64 * MiB);
    const disjointBodies = (round: number, baseline: string) =>
      sources.flatMap((source, p) =>
        Array.from({ length: IMAGES_PER_PAIR }, (_, k) => ({ v: 1, requestId: `d-${baseline}-${round}-${p}-${k}`, imageId: `img-${k}`, source, destination: destinations[p] })),
      );
    const fanoutBodies = (round: number, baseline: string) =>
      fanoutTargets.map((destination, i) => ({ v: 1, requestId: `f-${baseline}-${round}-${i}`, imageId: 'golden', source: 'origin', destination }));
    for (let r = 0; r < rounds; r++) {
      for (const baseline of ['none', 'global-lock'] as Baseline[]) {
        await clearCopies(cell, destinations);
        disjoint[baseline].push(await timeRun(cell, startConductor, baseline, disjointBodies(r, baseline)));
      }
      for (const baseline of ['none', 'exclusive-source'] as Baseline[]) {
        await clearCopies(cell, fanoutTargets);
        fanout[baseline].push(await timeRun(cell, startConductor, baseline, fanoutBodies(r, baseline)));
      }
    }
  });
  const ratios = (ours: number[], base: number[]) => ours.map((o, i) => base[i]! / o);
  const row = (scenario: string, ours: number[], base: number[], baselineName: string) => ({
    scenario,
    oursMs: round(median(ours), 0),
    baselineMs: round(median(base), 0),
    baseline: baselineName,
    speedup: round(median(ratios(ours, base)), 2),
    speedupSpread: spread(ratios(ours, base).map((x) => round(x, 2))),
    target: '>= 3x',
  });
  const report = {
    date: new Date().toISOString(),
    rounds,
    concurrency: CONCURRENCY,
    rows: [
      row(`${PAIRS * IMAGES_PER_PAIR} copies of 4 MiB over ${PAIRS} disjoint pairs`, disjoint.none, disjoint['global-lock'], 'one global lock'),
      row(`one 64 MiB image fanned out to ${FANOUT} nodes`, fanout.none, fanout['exclusive-source'], 'exclusive source lock'),
    ],
  };
  console.table(report.rows.map(({ speedupSpread, ...rest }) => ({ ...rest, spread: `${speedupSpread.min}..${speedupSpread.max}` })));
  await writeResults('lock-scope', report);
  return report;
}

if (require.main === module) void runLockScopeBench();
