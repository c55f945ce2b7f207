/*
 * One image to N nodes by pieces, simulated with the per-copy rules real copies run (issue 27): each
 * destination copy decides for itself with libs/image-store's pieceTurn, piece plan and swarm rules, on a
 * simulated clock and fluid bandwidth (bench/support/swarm-model.ts states the model). So 1,000 and 10,000
 * nodes run in minutes on one core, and the 16 and 64 node cells of `bench:fanout` (bench/fanout-one-copy.ts)
 * check the model against the real copies.
 * - One origin holds the image; every node's reads and writes are capped at R; NODE_READ_LIMIT 4 per node.
 * - Figures per row, each as a ratio to one copy alone in the same model (T1 = image / R): Tmax (the last
 *   destination) and p50 over destinations, and the bytes the origin sent in images; median over seeds
 *   with the min-max over seeds.
 * - Two ways a copy counts its reads in flight for the write-cap admission: `start` (as built: the rate a
 *   read expected when it started) and `recount` (its node's cap / that node's readers now).
 * Run: npm run bench:fanout-sim [-- --rows 16x256@16,64x256@4 --seeds 5 --count start,recount --name N]
 *   (a row is NODESxIMAGE_MiB@R_MiBps, with /PIECE_MiB to change the 4 MiB pieces; writes
 *   bench/results/<--name or swarm-simulation>.json)
 */
import { median, percentile, round, spread } from './bench-stats';
import { flagValue, numberFlag } from './support/cli-args';
import { writeResults } from './support/bench-cell';
import { type SwarmModel, runSwarm } from './support/swarm-model';

const MiB = 1024 * 1024;
const READ_SLOTS = 4;
const SEEDS = numberFlag('--seeds') ?? 5;
/** How a node's cap is shared among its reads: `fair` (equal shares at each end) or `maxmin`. */
const SHARE = flagValue('--share') ?? 'fair';
if (SHARE !== 'fair' && SHARE !== 'maxmin') throw new Error(`--share: fair or maxmin, got ${SHARE}`);
const COUNTS = (flagValue('--count') ?? 'start,recount').split(',').map((c) => {
  if (c !== 'start' && c !== 'recount') throw new Error(`--count: start or recount, got ${c}`);
  return c;
});

interface Row {
  nodes: number;
  imageMiB: number;
  mibps: number;
  pieceMiB: number;
}

function parseRow(text: string): Row {
  const match = /^(\d+)x(\d+)@(\d+(?:\.\d+)?)(?:\/(\d+))?$/.exec(text);
  if (!match) throw new Error(`--rows: ${text} is not NODESxIMAGE_MiB@R_MiBps[/PIECE_MiB]`);
  const [nodes, imageMiB, mibps, pieceMiB] = [match[1], match[2], match[3], match[4] ?? '4'].map(Number);
  return { nodes: nodes!, imageMiB: imageMiB!, mibps: mibps!, pieceMiB: pieceMiB! };
}

const ROWS = (flagValue('--rows') ?? '16x256@16,64x256@4').split(',').map(parseRow);

function summary(values: number[]) {
  return { median: round(median(values)), ...spread(values.map((v) => round(v))) };
}

function share(states: Record<string, number>, key: string): number {
  const all = Object.values(states).reduce((a, b) => a + b, 0);
  return all === 0 ? 0 : states[key]! / all;
}

function model(row: Row, destinations: number, recount: boolean, seed: number): SwarmModel {
  const imageBytes = row.imageMiB * MiB;
  const pieceBytes = row.pieceMiB * MiB;
  return {
    destinations,
    pieceCount: Math.ceil(imageBytes / pieceBytes),
    pieceBytes,
    imageBytes,
    bps: row.mibps * MiB,
    readSlots: READ_SLOTS,
    recount,
    maxMin: SHARE === 'maxmin',
    seed,
  };
}

function scenario(row: Row, count: 'start' | 'recount') {
  const recount = count === 'recount';
  const oneCopy = runSwarm(model(row, 1, recount, 1)).finishSeconds[0]!;
  const runs = Array.from({ length: SEEDS }, (_, i) => {
    const run = runSwarm(model(row, row.nodes, recount, i + 1));
    const ratios = run.finishSeconds.map((s) => s / oneCopy);
    return {
      max: Math.max(...ratios),
      p50: percentile(ratios, 50),
      p99: percentile(ratios, 99),
      originImages: run.originBytes / (row.imageMiB * MiB),
      unhashed: median(run.unhashed),
      countedOverActual: run.countedOverActual,
      usedAtFull: run.usedAtFull,
      heldBack: share(run.lookStates, 'heldBack'),
      noSlot: share(run.lookStates, 'noSlot'),
      nothing: share(run.lookStates, 'nothing'),
      events: run.events,
      wallMs: run.wallMs,
    };
  });
  return {
    count,
    oneCopyS: round(oneCopy, 3),
    tmax: summary(runs.map((r) => r.max)),
    p99: summary(runs.map((r) => r.p99)),
    p50: summary(runs.map((r) => r.p50)),
    originImages: summary(runs.map((r) => r.originImages)),
    unhashedAtLastPiece: summary(runs.map((r) => r.unhashed)),
    countedOverActual: summary(runs.map((r) => r.countedOverActual)),
    usedAtFull: summary(runs.map((r) => r.usedAtFull)),
    /** Shares of the copies' looks at which they used under 95% of their write cap, by why. */
    looksHeldBack: summary(runs.map((r) => r.heldBack)),
    looksWaitingForSlot: summary(runs.map((r) => r.noSlot)),
    looksWithNothing: summary(runs.map((r) => r.nothing)),
    eventsPerRun: runs[0]!.events,
    wallMsPerRun: summary(runs.map((r) => r.wallMs)),
  };
}

function main(): void {
  const started = Date.now();
  const settings = { readSlots: READ_SLOTS, seeds: SEEDS, counts: COUNTS, share: SHARE };
  console.log(JSON.stringify(settings));
  const rows = ROWS.flatMap((row) =>
    COUNTS.map((count) => {
      const result = { ...row, ...scenario(row, count) };
      console.log(JSON.stringify(result));
      return result;
    }),
  );
  const report = { settings, rows, wallMs: Date.now() - started };
  void writeResults(flagValue('--name') ?? 'swarm-simulation', report).then((file) =>
    console.log(`wrote ${file} in ${report.wallMs} ms`),
  );
}

main();
