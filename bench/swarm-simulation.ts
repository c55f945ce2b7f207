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
 * - The copies' end game (`--end-game on`, as built; `off`: 16 peers from the start only) and the verified
 *   source's seed rule (`--seed-rule peers`, as built, or `board`): bench/support/swarm-model-types.ts.
 *   With the end game, its joins per copy, and the median share of the image a copy had and the time
 *   (÷ T1) at a join.
 * Run: npm run bench:fanout-sim [-- --rows 16x256@16,64x256@4 --seeds 5 --count start,recount
 *   --end-game on,off --seed-rule peers,board --name N] (each list's values are crossed; a row is
 *   NODESxIMAGE_MiB@R_MiBps, with /PIECE_MiB to change the pieces from the size the conductors give that
 *   image (pieceBytesFor: 1 MiB below 512 MiB, 2 MiB below 1 GiB, else 4 MiB); writes
 *   bench/results/<--name or swarm-simulation>.json)
 */
import { pieceBytesFor } from '@app/image-store';
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
const END_GAMES = (flagValue('--end-game') ?? 'on').split(',').map((v) => {
  if (v !== 'on' && v !== 'off') throw new Error(`--end-game: on or off, got ${v}`);
  return v === 'on';
});
const SEED_RULES = (flagValue('--seed-rule') ?? 'peers').split(',').map((v) => {
  if (v !== 'peers' && v !== 'board') throw new Error(`--seed-rule: peers or board, got ${v}`);
  return v;
});

/** The rules one scenario runs, besides the fan-out itself. */
type Variant = Pick<SwarmModel, 'recount' | 'endGame' | 'seedRule'>;

interface Row {
  nodes: number;
  imageMiB: number;
  mibps: number;
  pieceMiB: number;
}

function parseRow(text: string): Row {
  const match = /^(\d+)x(\d+)@(\d+(?:\.\d+)?)(?:\/(\d+))?$/.exec(text);
  if (!match) throw new Error(`--rows: ${text} is not NODESxIMAGE_MiB@R_MiBps[/PIECE_MiB]`);
  const [nodes, imageMiB, mibps] = [match[1], match[2], match[3]].map(Number);
  // The piece size the conductors give an image of this size, unless the row names one.
  const pieceMiB = match[4] === undefined ? pieceBytesFor(imageMiB! * MiB)! / MiB : Number(match[4]);
  return { nodes: nodes!, imageMiB: imageMiB!, mibps: mibps!, pieceMiB };
}

const ROWS = (flagValue('--rows') ?? '16x256@16,64x256@4').split(',').map(parseRow);

function summary(values: number[]) {
  return { median: round(median(values)), ...spread(values.map((v) => round(v))) };
}

function share(states: Record<string, number>, key: string): number {
  const all = Object.values(states).reduce((a, b) => a + b, 0);
  return all === 0 ? 0 : states[key]! / all;
}

function model(row: Row, destinations: number, variant: Variant, seed: number): SwarmModel {
  const imageBytes = row.imageMiB * MiB;
  const pieceBytes = row.pieceMiB * MiB;
  return {
    destinations,
    pieceCount: Math.ceil(imageBytes / pieceBytes),
    pieceBytes,
    imageBytes,
    bps: row.mibps * MiB,
    readSlots: READ_SLOTS,
    ...variant,
    maxMin: SHARE === 'maxmin',
    seed,
  };
}

function scenario(row: Row, variant: Variant) {
  const oneCopy = runSwarm(model(row, 1, variant, 1)).finishSeconds[0]!;
  const runs = Array.from({ length: SEEDS }, (_, i) => {
    const run = runSwarm(model(row, row.nodes, variant, i + 1));
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
      joinsPerCopy: run.endGameJoins.length / row.nodes,
      joinHad: median(run.endGameJoins.map((j) => j.had)),
      joinAt: median(run.endGameJoins.map((j) => j.at / oneCopy)),
      events: run.events,
      wallMs: run.wallMs,
    };
  });
  return {
    count: variant.recount ? 'recount' : 'start',
    endGame: variant.endGame ? 'on' : 'off',
    seedRule: variant.seedRule,
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
    endGameJoinsPerCopy: summary(runs.map((r) => r.joinsPerCopy)),
    /** Medians over a run's joins: the share of the image the joining copy had, and the time ÷ T1. */
    endGameJoinHad: summary(runs.map((r) => r.joinHad)),
    endGameJoinAt: summary(runs.map((r) => r.joinAt)),
    eventsPerRun: runs[0]!.events,
    wallMsPerRun: summary(runs.map((r) => r.wallMs)),
  };
}

function main(): void {
  const started = Date.now();
  const settings = {
    readSlots: READ_SLOTS,
    seeds: SEEDS,
    counts: COUNTS,
    endGames: END_GAMES,
    seedRules: SEED_RULES,
    share: SHARE,
  };
  console.log(JSON.stringify(settings));
  const variants = COUNTS.flatMap((count) =>
    END_GAMES.flatMap((endGame) =>
      SEED_RULES.map((seedRule): Variant => ({ recount: count === 'recount', endGame, seedRule })),
    ),
  );
  const rows = ROWS.flatMap((row) =>
    variants.map((variant) => {
      const result = { ...row, ...scenario(row, variant) };
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
