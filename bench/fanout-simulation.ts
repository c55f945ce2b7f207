/*
 * One image to N nodes by verified pieces, simulated (issue 27): the scheduler of @app/fanout (Fanout and
 * chooseFetch, the code the copies are to use) driven by a simulated clock and bandwidth
 * (bench/support/fluid-network.ts), so 1,000 and 10,000 nodes run in seconds. Model (bench/RESULTS.md too):
 * - one source holds the image (a published verified image); IMAGE_MIB in pieces of 4 MiB;
 * - every node's reads and writes are capped at the same rate R; a node's read cap is shared fairly among
 *   the reads it serves (at most READ_SLOTS at once, as NODE_READ_LIMIT), a destination's write cap among
 *   its fetches (at most MAX_FETCHES); a piece moves at the smaller of its two shares, recomputed whenever
 *   a read starts or ends at either end (unused share is not handed on: pessimistic);
 * - a destination serves a piece as soon as it is verified; no time to verify (sha256 of 4 MiB is about
 *   10 ms), no request, lock or network latency;
 * - event granularity: one event per piece that ends (768 per destination at 4 MiB); time is continuous in
 *   between; at each event the scheduler gets TURNS turns (Fanout.assign's budget). 10,000 nodes run with
 *   16 MiB pieces (1.9 million events instead of 7.7, to stay under a minute on 2 shared cores); the row
 *   "1000@16" measures what the coarser pieces cost against 4 MiB (larger pieces only lengthen the pipeline).
 * Figures: each destination's completion time as a ratio to one copy at R (IMAGE / R): p50/p99/max over
 * destinations, median over seeds with the spread (min–max). Baseline, same run: today's whole-copy tree,
 * the same scheduler with the image as one piece and one fetch per destination (a destination becomes a
 * source only once complete). Multi-holder: one destination capped at R reading from k complete holders
 * each capped at R/k, against reading from one of them.
 * Kept beside bench/swarm-simulation.ts (the per-copy rules real copies run) as what one central decision
 * over the whole fan-out would give: the bound the per-copy rules are measured against.
 * Run: npm run bench:fanout-central-sim [-- --nodes 16,64,1000,1000@16,10000@16 --seeds 5 --turns 8]
 *      (N@MiB: that many destinations with pieces of that size; writes bench/results/<--name or
 *      fanout-simulation>.json)
 */
import { Fanout, type FanoutNodeInput } from '@app/fanout';
import { median, percentile, round, spread } from './bench-stats';
import { flagValue, numberFlag } from './support/cli-args';
import { writeResults } from './support/bench-cell';
import { runFluid } from './support/fluid-network';

const MiB = 1024 * 1024;
const IMAGE_MIB = numberFlag('--image-mib') ?? 3072;
const PIECE_MIB = 4;
const R = 100 * MiB; // the ratios do not depend on it
const READ_SLOTS = 4;
const MAX_FETCHES = numberFlag('--max-fetches') ?? 8;
const SEEDS = numberFlag('--seeds') ?? 5;
/** Turns the scheduler is offered per event (Fanout.assign's budget): bounds the work per event. */
const TURNS = numberFlag('--turns') ?? 8;
const ONE_COPY_S = (IMAGE_MIB * MiB) / R;
const ROWS = (flagValue('--nodes') ?? '16,64,1000,1000@16,10000@16').split(',').map((row) => {
  const [n, mib] = row.split('@').map(Number);
  if (!Number.isSafeInteger(n) || n! < 1 || (mib !== undefined && !(mib > 0)))
    throw new Error(`--nodes: ${row} is not N or N@MiB`);
  return { nodes: n!, pieceMiB: mib ?? PIECE_MIB };
});

function node(id: string, complete: boolean, readBps = R, writeBps = R): FanoutNodeInput {
  return { id, complete, destination: !complete, readSlots: READ_SLOTS, readBps, writeBps };
}

function summary(values: number[]) {
  return { median: round(median(values)), ...spread(values.map((v) => round(v))) };
}

/** One fan-out run: completion ratios (p50, p99, max over destinations) and its cost. */
function fanOut(n: number, seed: number, pieceMiB: number, wholeCopies: boolean) {
  const pieceCount = wholeCopies ? 1 : Math.ceil(IMAGE_MIB / pieceMiB);
  const fanout = new Fanout({ pieceCount, maxFetchesPerDestination: wholeCopies ? 1 : MAX_FETCHES, seed }, [
    node('source', true),
    ...Array.from({ length: n }, (_, i) => node(`d${i}`, false)),
  ]);
  const run = runFluid(fanout, (IMAGE_MIB * MiB) / pieceCount, TURNS);
  const ratios = Array.from(run.finishSeconds)
    .filter((s) => !Number.isNaN(s))
    .map((s) => s / ONE_COPY_S);
  if (ratios.length !== n) throw new Error(`${n} destinations, ${ratios.length} finished`);
  const [p50, p99, max] = [percentile(ratios, 50), percentile(ratios, 99), Math.max(...ratios)];
  return { p50, p99, max, events: run.pieceEvents, wallMs: run.wallMs };
}

function scenario(n: number, pieceMiB: number, wholeCopies: boolean) {
  const runs = Array.from({ length: SEEDS }, (_, seed) => fanOut(n, seed + 1, pieceMiB, wholeCopies));
  return {
    p50: summary(runs.map((r) => r.p50)),
    p99: summary(runs.map((r) => r.p99)),
    max: summary(runs.map((r) => r.max)),
    eventsPerRun: runs[0]!.events,
    wallMsPerRun: summary(runs.map((r) => r.wallMs)),
  };
}

/** One destination capped at R reading from k complete holders capped at R/k, against one such holder. */
function multiHolder(k: number) {
  const pieceCount = Math.ceil(IMAGE_MIB / PIECE_MIB);
  const seconds = (holders: number) => {
    const inputs = [
      ...Array.from({ length: holders }, (_, i) => node(`h${i}`, true, R / k, R)),
      node('d', false),
    ];
    const fanout = new Fanout({ pieceCount, maxFetchesPerDestination: MAX_FETCHES, seed: 1 }, inputs);
    return runFluid(fanout, (IMAGE_MIB * MiB) / pieceCount, TURNS).finishSeconds[holders]!;
  };
  const one = seconds(1);
  const all = seconds(k);
  return {
    k,
    oneHolderS: round(one),
    kHoldersS: round(all),
    speedup: round(one / all),
    ofOneCopyAtR: round(all / ONE_COPY_S),
  };
}

function main(): void {
  const started = Date.now();
  const model = {
    imageMiB: IMAGE_MIB,
    readSlots: READ_SLOTS,
    maxFetches: MAX_FETCHES,
    turnsPerEvent: TURNS,
    seeds: SEEDS,
    oneCopyS: ONE_COPY_S,
  };
  console.log(JSON.stringify(model));
  const fanouts = ROWS.map(({ nodes, pieceMiB }) => {
    const row = {
      nodes,
      pieceMiB,
      pieces: scenario(nodes, pieceMiB, false),
      wholeCopyTree: scenario(nodes, pieceMiB, true),
    };
    console.log(JSON.stringify(row));
    return row;
  });
  const multi = [2, 4, 8].map((k) => {
    const row = multiHolder(k);
    console.log(JSON.stringify(row));
    return row;
  });
  const report = { model, fanouts, multiHolder: multi, wallMs: Date.now() - started };
  void writeResults(flagValue('--name') ?? 'fanout-simulation', report).then((file) =>
    console.log(`wrote ${file} in ${report.wallMs} ms`),
  );
}

main();
