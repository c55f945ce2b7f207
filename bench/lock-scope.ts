/*
 * What the lock design is worth, each against its baseline in the same run, repeated:
 *  - no global lock: many small copies over 16 disjoint node pairs, two node-local locks vs one global lock;
 *  - shared source lock: one image fanned out to 16 nodes from one source, shared vs exclusive source lock.
 * The baselines are the same conductor with another lock plan (bench/support/lock-baselines.ts, through the
 * conductor's one seam; bench/support/lock-baseline-conductor.ts is its process).
 * Two settings, each with its baseline in the same round:
 *  - "machine": a real conductor process on this machine. Here every copy hashes on the conductor's one
 *    main thread, so on 2 cores the copies are CPU-bound and concurrency buys little;
 *  - "bandwidth-limited": the same CopyWorkflow, locks and folders in-process, with each destination
 *    node's writes limited to 32 MiB/s (bench/support/throttled-writes.ts, benchmark only), the
 *    situation of a real cell where a node's disk or link is the bottleneck, not the conductor's CPU.
 * Run: npm run bench:locks   (writes bench/results/lock-scope.json)
 *      `node dist/bench/lock-scope.js --small` (4 pairs, 4 fan-out nodes, one round: a quick check that it runs)
 *      `--rounds N`; `--cpu-prof-dir DIR`: a CPU profile of each node-local-locks conductor process
 *      (read with dist/bench/cpu-profile-summary.js).
 * Each row also says where a copy's time went, from the results' own `durations` (medians per copy).
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageStore } from '@app/image-store';
import { NodeLockManager, newAttemptId } from '@app/locking';
import { CopyWorkflow, ImageHolderIndex, SourceSelector } from '../apps/conductor/src';
import { BASELINE_ENV, GLOBAL_LOCK_NODE, LOCK_PLANS, type LockBaseline } from './support/lock-baselines';
import { flagValue, numberFlag } from './support/cli-args';
import { type CpuUse, brokerPid, measureCpuUse } from './support/cpu-use';
import { writeRandomFile } from './support/random-file';
import { installWriteThrottle } from './support/throttled-writes';
import { median, round, spread } from './bench-stats';
import {
  BenchRequester,
  type BenchCell,
  requestAll,
  type StartConductor,
  withCell,
  writeResults,
} from './support/bench-cell';

const MiB = 1024 * 1024;
/** --small: a quick check that the benchmark runs, not a measurement. */
const SMALL = process.argv.includes('--small');
const PAIRS = SMALL ? 4 : 16;
const IMAGES_PER_PAIR = 4;
const FANOUT = SMALL ? 4 : 16;
const GOLDEN_MIB = SMALL ? 8 : 64;
const CONCURRENCY = 16;
const CPU_PROF_DIR = flagValue('--cpu-prof-dir');

/** Per copy, medians over a run's results: where a copy's time went (docs/protocol.md, `durations`). */
export interface Phases {
  totalMs: number;
  lockWaitMs: number;
  copyMs: number;
  verifyMs: number;
  /** During the run, in cores: the conductor process (all threads), the broker, the whole machine. */
  conductorCores: number;
  brokerCores: number;
  machineBusyCores: number;
  machineIowaitCores: number;
}

function phasesOf(replies: Record<string, unknown>[], cpu: CpuUse): Phases {
  const pick = (key: string) =>
    round(median(replies.map((r) => Number((r.durations as Record<string, unknown>)?.[key] ?? 0))), 1);
  return {
    totalMs: pick('totalMs'),
    lockWaitMs: pick('lockWaitMs'),
    copyMs: pick('copyMs'),
    verifyMs: pick('verifyMs'),
    conductorCores: cpu.processes.conductor ?? 0,
    brokerCores: cpu.processes.broker ?? 0,
    machineBusyCores: cpu.machineBusyCores,
    machineIowaitCores: cpu.machineIowaitCores,
  };
}

type Baseline = LockBaseline;
/** The conductor with a baseline's lock plan, compiled beside this file. */
const BASELINE_CONDUCTOR = path.join(__dirname, 'support', 'lock-baseline-conductor.js');

async function clearCopies(cell: BenchCell, nodes: string[]): Promise<void> {
  for (const node of nodes) {
    const dir = cell.store.nodeLayout(node).images;
    await fsp.rm(dir, { recursive: true, force: true });
    await fsp.mkdir(dir, { recursive: true });
  }
}

function medianPhases(runs: Phases[]): Phases {
  const pick = (key: keyof Phases) => round(median(runs.map((p) => p[key])), 2);
  return {
    totalMs: pick('totalMs'),
    lockWaitMs: pick('lockWaitMs'),
    copyMs: pick('copyMs'),
    verifyMs: pick('verifyMs'),
    conductorCores: pick('conductorCores'),
    brokerCores: pick('brokerCores'),
    machineBusyCores: pick('machineBusyCores'),
    machineIowaitCores: pick('machineIowaitCores'),
  };
}

async function timeRun(
  cell: BenchCell,
  startConductor: StartConductor,
  baseline: Baseline,
  bodies: object[],
  phases: Phases[],
): Promise<number> {
  // NODE_READ_LIMIT lifted: this measures the lock modes, not the per-node read limit.
  const conductor = await startConductor(
    {
      COPY_CONCURRENCY: String(CONCURRENCY),
      NODE_READ_LIMIT: String(CONCURRENCY),
      [BASELINE_ENV]: baseline,
      LOCK_WAIT_MS: '600000',
    },
    BASELINE_CONDUCTOR,
    CPU_PROF_DIR && baseline === 'none' ? ['--cpu-prof', '--cpu-prof-dir', CPU_PROF_DIR] : [],
  );
  const client = await BenchRequester.open();
  try {
    const cpu = measureCpuUse({ conductor: conductor.pid, broker: brokerPid() });
    const { ms, replies } = await requestAll(client, cell.topology.requestQueue.name, bodies);
    const machine = cpu();
    const failed = replies.filter((r) => r.status !== 'completed');
    if (failed.length > 0)
      throw new Error(`${failed.length} copies did not complete: ${JSON.stringify(failed[0])}`);
    phases.push(phasesOf(replies, machine));
    return ms;
  } finally {
    await client.close();
    conductor.signal('SIGTERM');
    await conductor.exited();
  }
}

const quiet = { warn: () => undefined, debug: () => undefined };
const SIM_NODE_MIB_PER_S = 32;

/** The bandwidth-limited setting: copies started at once through the real workflow, in-process. */
async function simulate(
  baseline: LockBaseline,
  jobs: Array<{ imageId: string; source: string; destination: string }>,
  root: string,
): Promise<number> {
  const store = new ImageStore({ root, fsync: false });
  for (const destination of new Set(jobs.map((j) => j.destination))) {
    await fsp.rm(path.join(root, destination), { recursive: true, force: true });
    await store.markers.registerNode(destination, 'bench');
  }
  const locks = new NodeLockManager({ root, conductorId: 'bench' });
  const selector = new SourceSelector(store, {
    index: new ImageHolderIndex(store.entries),
    readLimit: 64,
    conductorId: 'bench',
  });
  const workflow = new CopyWorkflow(store, locks, selector, {
    lockWaitMs: 600_000,
    log: quiet,
    lockPlan: LOCK_PLANS[baseline],
  });
  const started = performance.now();
  const results = await Promise.all(jobs.map((job) => workflow.run(job, { attemptId: newAttemptId() })));
  const ms = performance.now() - started;
  if (results.some((r) => r.status !== 'completed')) throw new Error('a simulated copy did not complete');
  await locks.releaseAll();
  return ms;
}

async function runSimulation(rounds: number) {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-bench-locks-'));
  const store = new ImageStore({ root, fsync: false });
  const seed = async (node: string, imageId: string) => {
    const file = path.join(root, '.seed');
    await writeRandomFile(file, 4 * MiB);
    await store.markers.registerNode(node, 'bench');
    await store.imports.importImage(node, imageId, file);
    await fsp.rm(file);
  };
  const disjointJobs = Array.from({ length: PAIRS }, (_, p) =>
    Array.from({ length: 2 }, (_, k) => ({
      imageId: `img-${k}`,
      source: `src-${p}`,
      destination: `dst-${p}`,
    })),
  ).flat();
  const fanoutJobs = Array.from({ length: FANOUT }, (_, i) => ({
    imageId: 'golden',
    source: 'origin',
    destination: `fan-${i}`,
  }));
  for (let p = 0; p < PAIRS; p++) for (let k = 0; k < 2; k++) await seed(`src-${p}`, `img-${k}`);
  await seed('origin', 'golden');
  const throttle = installWriteThrottle(root, SIM_NODE_MIB_PER_S * MiB);
  const out = {
    disjoint: { ours: [] as number[], base: [] as number[] },
    fanout: { ours: [] as number[], base: [] as number[] },
  };
  try {
    for (let r = 0; r < rounds; r++) {
      out.disjoint.ours.push(await simulate('none', disjointJobs, root));
      out.disjoint.base.push(await simulate('global-lock', disjointJobs, root));
      out.fanout.ours.push(await simulate('none', fanoutJobs, root));
      out.fanout.base.push(await simulate('exclusive-source', fanoutJobs, root));
    }
  } finally {
    throttle.uninstall();
    await fsp.rm(root, { recursive: true, force: true });
  }
  return out;
}

export async function runLockScopeBench(options: { rounds?: number } = {}) {
  const rounds = options.rounds ?? numberFlag('--rounds') ?? 5;
  const sources = Array.from({ length: PAIRS }, (_, i) => `src-${i}`);
  const destinations = Array.from({ length: PAIRS }, (_, i) => `dst-${i}`);
  const fanoutTargets = Array.from({ length: FANOUT }, (_, i) => `fan-${i}`);
  const disjoint: Record<Baseline, number[]> = { none: [], 'global-lock': [], 'exclusive-source': [] };
  const fanout: Record<Baseline, number[]> = { none: [], 'global-lock': [], 'exclusive-source': [] };
  const phases: Record<'disjoint' | 'fanout', Record<Baseline, Phases[]>> = {
    disjoint: { none: [], 'global-lock': [], 'exclusive-source': [] },
    fanout: { none: [], 'global-lock': [], 'exclusive-source': [] },
  };
  // The global-lock baseline's folder is a node of the cell: locks are only taken in registered nodes.
  const nodes = ['origin', GLOBAL_LOCK_NODE, ...sources, ...destinations, ...fanoutTargets];
  await withCell(nodes, async (cell, startConductor) => {
    for (let p = 0; p < PAIRS; p++)
      for (let k = 0; k < IMAGES_PER_PAIR; k++) await cell.seed(sources[p]!, `img-${k}`, 4 * MiB);
    await cell.seed('origin', 'golden', GOLDEN_MIB * MiB);
    const disjointBodies = (round: number, baseline: string) =>
      sources.flatMap((source, p) =>
        Array.from({ length: IMAGES_PER_PAIR }, (_, k) => ({
          v: 1,
          requestId: `d-${baseline}-${round}-${p}-${k}`,
          imageId: `img-${k}`,
          source,
          destination: destinations[p],
        })),
      );
    const fanoutBodies = (round: number, baseline: string) =>
      fanoutTargets.map((destination, i) => ({
        v: 1,
        requestId: `f-${baseline}-${round}-${i}`,
        imageId: 'golden',
        source: 'origin',
        destination,
      }));
    for (let r = 0; r < rounds; r++) {
      for (const baseline of ['none', 'global-lock'] as Baseline[]) {
        await clearCopies(cell, destinations);
        disjoint[baseline].push(
          await timeRun(
            cell,
            startConductor,
            baseline,
            disjointBodies(r, baseline),
            phases.disjoint[baseline],
          ),
        );
      }
      for (const baseline of ['none', 'exclusive-source'] as Baseline[]) {
        await clearCopies(cell, fanoutTargets);
        fanout[baseline].push(
          await timeRun(cell, startConductor, baseline, fanoutBodies(r, baseline), phases.fanout[baseline]),
        );
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
  const sim = await runSimulation(rounds);
  const report = {
    date: new Date().toISOString(),
    rounds,
    concurrency: CONCURRENCY,
    rows: [
      row(
        `machine: ${PAIRS * IMAGES_PER_PAIR} copies of 4 MiB over ${PAIRS} disjoint pairs (conductor process)`,
        disjoint.none,
        disjoint['global-lock'],
        'one global lock',
      ),
      row(
        `machine: one ${GOLDEN_MIB} MiB image fanned out to ${FANOUT} nodes (conductor process)`,
        fanout.none,
        fanout['exclusive-source'],
        'exclusive source lock',
      ),
      row(
        `bandwidth-limited (${SIM_NODE_MIB_PER_S} MiB/s per node): ${PAIRS * 2} copies of 4 MiB over ${PAIRS} disjoint pairs`,
        sim.disjoint.ours,
        sim.disjoint.base,
        'one global lock',
      ),
      row(
        `bandwidth-limited (${SIM_NODE_MIB_PER_S} MiB/s per node): one 4 MiB image fanned out to ${FANOUT} nodes`,
        sim.fanout.ours,
        sim.fanout.base,
        'exclusive source lock',
      ),
    ],
    /** Per copy (median of the rounds' medians) in the conductor-process rows: where the time went. */
    phases: {
      'disjoint pairs, node-local locks': medianPhases(phases.disjoint.none),
      'disjoint pairs, one global lock': medianPhases(phases.disjoint['global-lock']),
      'fan-out, shared source lock': medianPhases(phases.fanout.none),
      'fan-out, exclusive source lock': medianPhases(phases.fanout['exclusive-source']),
    },
  };
  console.table(
    report.rows.map(({ speedupSpread, ...rest }) => ({
      ...rest,
      spread: `${speedupSpread.min}..${speedupSpread.max}`,
    })),
  );
  console.table(report.phases);
  await writeResults(SMALL ? 'lock-scope-small' : 'lock-scope', report);
  return report;
}

if (require.main === module) void runLockScopeBench(SMALL ? { rounds: 1 } : {});
