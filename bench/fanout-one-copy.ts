/*
 * Fan-out at the speed of one copy (issue 27): one 256 MiB image (imported with its piece list, in the pieces
 * the conductors give that size: pieceBytesFor, 256 of 1 MiB) on `origin`, copied to N = 16 and 64 destinations at once, no source named, in-process (the
 * conductor's CopyWorkflow, SourceSelector, holder index, node-local locks and NodeBandwidth on a temp
 * folder, fsync off, no broker). Every node's reads AND writes are capped at the same rate R
 * (NODE_READ_BPS = NODE_WRITE_BPS): 16 MiB/s with 16 nodes, 4 MiB/s with 64, so that the N copies together
 * (N x R) stay within what this 2-core machine hashes and writes, and the fan-out measures the scheduling,
 * not the CPU. NODE_READ_LIMIT is the default, 4: with pieces a read slot is taken per piece.
 * Baseline of the same round, same caps: ONE copy to one destination (T1 = 256 MiB / R). Fan-out: Tmax
 * (start until the last destination is published and its run resolved) and p50 of the destinations'
 * completion times; goal Tmax / T1 <= 1.5. Also the bytes `origin` served (1x the image: every piece left
 * it once). Rounds interleave the baseline and each fan-out. Every destination is verified afterwards (meta
 * sha256 = the source's, and the file hashed), so a wrong copy cannot count.
 * `--pieces on|off` (default on) is passed as the copy workflow's `fromPartialCopies` option (SHARE_PIECES);
 * off: today's whole copies, a tree (a destination serves once its copy is published).
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ImageStore, pieceBytesFor } from '@app/image-store';
import { NodeLockManager, newAttemptId } from '@app/locking';
import { CopyWorkflow, ImageHolderIndex, NodeBandwidth, SourceSelector } from '../apps/conductor/src';
import { median, percentile, round, spread } from './bench-stats';
import { writeRandomFile } from './support/random-file';

const MiB = 1024 * 1024;
const IMAGE_MIB = 256;
const PIECES = (IMAGE_MIB * MiB) / pieceBytesFor(IMAGE_MIB * MiB)!;
/** R per fan-out size (MiB/s): N x R within what 2 cores hash twice and write. */
const rateMiBps = (nodes: number) => (nodes <= 16 ? 16 : 4);
const READ_LIMIT = 4;
const IMAGE = 'golden-256.qcow2';
const ORIGIN = 'origin';
const BASELINE_DESTINATION = 'one';
const GOAL = 1.5;
const none = { fallback: 0, nodes: {} };

export interface OneCopyOptions {
  nodes: number[];
  rounds: number;
  /** Passed as CopyWorkflow's `fromPartialCopies` (--pieces on|off). */
  fromPartialCopies: boolean;
  /**
   * Conductors the fan-out's destinations are dealt out to (--conductors, default 1): each with a store,
   * locks, selector and workflow of its own on the same folder, so that it sees the others' copies in
   * progress only through their records (MAX_REMOTE_PEERS_PER_COPY), while one NodeBandwidth caps every
   * node's bytes whichever conductor moves them.
   */
  conductors?: number;
}

/** `--pieces on|off` (default on), `--nodes 16,64` (default) and `--conductors 1` (default), validated. */
export function parseOneCopyFlags(
  pieces: string | undefined,
  nodes: string | undefined,
  conductors: string | undefined,
) {
  if (pieces !== undefined && pieces !== 'on' && pieces !== 'off')
    throw new Error(`--pieces: on or off, got ${pieces}`);
  const counts = (nodes ?? '16,64').split(',').map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n < 1 || n > 999))
    throw new Error(`--nodes: comma-separated node counts from 1 to 999, got ${nodes}`);
  const k = Number(conductors ?? '1');
  if (!Number.isInteger(k) || k < 1 || k > 16)
    throw new Error(`--conductors: a whole number from 1 to 16, got ${conductors}`);
  return { fromPartialCopies: pieces !== 'off', nodes: counts, conductors: k };
}

interface FanOut {
  /** Per destination: ms from the start until its run resolved, in destination order. */
  doneMs: number[];
  /** Copies per source node that served them (whole-copy source). */
  sources: Record<string, number>;
  /** Copies that also read pieces from further verified holders. */
  withHelpers: number;
  /** The bytes `origin` served, in images (1: each piece left it once). */
  originImages: number;
}

/**
 * Runs one copy per destination, all at once, with fresh locks, index, selector, caps and workflow per
 * conductor (destinations dealt out in turn); the caps are shared.
 */
async function copyToAll(
  store: ImageStore,
  destinations: string[],
  rateMiBps: number,
  fromPartialCopies: boolean,
  conductors = 1,
): Promise<FanOut> {
  for (const node of destinations) {
    await fsp.rm(path.join(store.root, node), { recursive: true, force: true });
    await store.markers.registerNode(node, 'bench');
  }
  const stores = [
    store,
    ...Array.from({ length: conductors - 1 }, () => new ImageStore({ root: store.root, fsync: false })),
  ];
  const bandwidth = new NodeBandwidth({
    read: { fallback: rateMiBps * MiB, nodes: {} },
    write: { fallback: rateMiBps * MiB, nodes: {} },
    backgroundRead: none,
    backgroundWrite: none,
  });
  let withHelpers = 0;
  // Per destination, where its pieces came from (the conductor's 'a copy read its pieces' line).
  const readFrom = new Map<string, { fromVerified: number; fromCopiesInProgress: number; peers: number }>();
  const log = {
    warn: (fields: object, message: string) => process.stderr.write(`${message} ${JSON.stringify(fields)}\n`),
    debug: (_fields: object, message: string) => {
      if (message === 'reading from several holders') withHelpers++;
    },
    info: (fields: Record<string, unknown>, message: string) => {
      if (message !== 'a copy read its pieces') return;
      readFrom.set(String(fields.destination), {
        fromVerified: Number(fields.fromVerified),
        fromCopiesInProgress: Number(fields.fromCopiesInProgress),
        peers: (fields.copiesInProgress as unknown[]).length,
      });
    },
  };
  const parts = stores.map((own, i) => {
    const conductorId = conductors === 1 ? 'bench' : `bench-${i}`;
    const locks = new NodeLockManager({ root: own.root, conductorId, requireNodeFolder: true });
    const index = new ImageHolderIndex(own.entries);
    const selector = new SourceSelector(own, { index, readLimit: READ_LIMIT, conductorId });
    // The cast lets the option through before CopyWorkflow's options type names it.
    const workflow = new CopyWorkflow(own, locks, selector, {
      lockWaitMs: 600_000,
      log,
      bandwidth,
      fromPartialCopies,
    } as ConstructorParameters<typeof CopyWorkflow>[3]);
    return { locks, index, workflow };
  });
  // Only origin holds the image when the copies start (the destinations of the last measurement are gone).
  const holders = [...(await parts[0]!.index.holdersOf(IMAGE))];
  if (holders.join() !== ORIGIN)
    throw new Error(`holders before the copies: ${holders.join()}, not ${ORIGIN}`);
  const started = performance.now();
  // How busy this process's one thread was, per second (event-loop utilization): a fan-out in one process
  // hashes every piece twice on it, so a thread at 1.0 is a bench that measures its CPU, not its copies.
  const busy: number[] = [];
  let lastElu = performance.eventLoopUtilization();
  const sampler = setInterval(() => {
    const now = performance.eventLoopUtilization();
    busy.push(performance.eventLoopUtilization(now, lastElu).utilization);
    lastElu = now;
  }, 1000);
  try {
    const done = await Promise.all(
      destinations.map(async (destination, i) => {
        const { workflow } = parts[i % parts.length]!;
        const result = await workflow.run({ imageId: IMAGE, destination }, { attemptId: newAttemptId() });
        if (result.status !== 'completed')
          throw new Error(`copy to ${destination}: ${JSON.stringify(result)}`);
        return { destination, ms: performance.now() - started, source: result.source! };
      }),
    );
    // The three last copies, with where their pieces came from: what a tail is made of.
    const last = [...done].sort((a, b) => b.ms - a.ms).slice(0, 3);
    if (destinations.length > 1)
      console.log(
        `  last copies: ${last.map((d) => `${d.destination} ${round(d.ms, 0)} ms ${JSON.stringify(readFrom.get(d.destination) ?? {})}`).join('; ')}; ` +
          `median copy: ${JSON.stringify(readFrom.get([...done].sort((a, b) => a.ms - b.ms)[done.length >> 1]!.destination) ?? {})}; ` +
          `thread busy per second: median ${round(median(busy), 2)}, seconds at >= 0.95: ${busy.filter((b) => b >= 0.95).length} of ${busy.length}; ` +
          `after the median copy: ${round(
            median(
              busy.slice(
                Math.floor(
                  percentile(
                    done.map((d) => d.ms),
                    50,
                  ) / 1000,
                ),
              ),
            ),
            2,
          )}`,
      );
    const sources: Record<string, number> = {};
    for (const d of done) sources[d.source] = (sources[d.source] ?? 0) + 1;
    // What `origin` sent, in images: 1 when every piece left it once.
    const originBytes = bandwidth.view().find((v) => v.node === ORIGIN && v.direction === 'read')?.bytes ?? 0;
    return {
      doneMs: done.map((d) => d.ms),
      sources,
      withHelpers,
      originImages: originBytes / (IMAGE_MIB * MiB),
    };
  } finally {
    clearInterval(sampler);
    for (const { locks } of parts) await locks.releaseAll();
    for (const extra of stores.slice(1)) await extra.close();
  }
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Throws unless every destination's meta names the source's sha256 and its file hashes to it; then removes
 * the destinations, so that `origin` is the only holder when the next measurement starts.
 */
async function verifyAndRemove(store: ImageStore, destinations: string[], sha256: string): Promise<void> {
  for (const node of destinations) {
    const meta = await store.entries.readMeta(node, IMAGE);
    if (meta?.sha256 !== sha256) throw new Error(`${node}: meta sha256 ${meta?.sha256}, source ${sha256}`);
    const hashed = await sha256Of(store.entries.imagePath(node, IMAGE));
    if (hashed !== sha256) throw new Error(`${node}: file hashes to ${hashed}, source ${sha256}`);
  }
  for (const node of destinations)
    await fsp.rm(path.join(store.root, node), { recursive: true, force: true });
}

/** Seeds `origin` with the image and its piece list (as multi-holder.ts seeds its holders). */
async function seedOrigin(store: ImageStore): Promise<string> {
  await store.markers.registerNode(ORIGIN, 'bench');
  const staging = path.join(store.root, '.staging-one-copy');
  await writeRandomFile(staging, IMAGE_MIB * MiB);
  await store.imports.importImage(ORIGIN, IMAGE, staging);
  await fsp.rm(staging);
  const pieces = await store.copies.readPieceList(ORIGIN, IMAGE);
  if (pieces.list?.pieces.length !== PIECES)
    throw new Error(`origin's piece list: ${pieces.problem ?? `${pieces.list?.pieces.length} pieces`}`);
  const meta = await store.entries.readMeta(ORIGIN, IMAGE);
  if (!meta) throw new Error('origin: no meta after the import');
  return meta.sha256;
}

/** One row per N: T1 and the fan-out's Tmax and p50, with their ratios per round (median, spread). */
function summarize(nodes: number, t1: number[], fanOuts: FanOut[], fromPartialCopies: boolean) {
  const tmax = fanOuts.map((f) => Math.max(...f.doneMs));
  const p50 = fanOuts.map((f) => percentile(f.doneMs, 50));
  const ratio = (values: number[]) => values.map((v, i) => v / t1[i]!);
  const ms = (values: number[]) => ({
    median: round(median(values), 0),
    spread: `${round(spread(values).min, 0)}..${round(spread(values).max, 0)}`,
  });
  const factor = (values: number[]) => ({
    median: round(median(values), 2),
    spread: `${round(spread(values).min, 2)}..${round(spread(values).max, 2)}`,
  });
  return {
    nodes,
    pieces: fromPartialCopies ? 'on' : 'off',
    t1Ms: ms(t1),
    tmaxMs: ms(tmax),
    p50Ms: ms(p50),
    tmaxPerT1: factor(ratio(tmax)),
    p50PerT1: factor(ratio(p50)),
    goal: `Tmax / T1 <= ${GOAL}`,
    met: median(ratio(tmax)) <= GOAL,
    lastRoundSources: fanOuts.at(-1)!.sources,
    copiesWithHelpers: fanOuts.map((f) => f.withHelpers),
    originImagesSent: factor(fanOuts.map((f) => f.originImages)),
  };
}

/** The scenario on `store` (a fresh temp CACHE_ROOT the caller removes). */
export async function runOneCopyFanout(store: ImageStore, options: OneCopyOptions) {
  const sha256 = await seedOrigin(store);
  const most = Math.max(...options.nodes);
  const all = Array.from({ length: most }, (_, i) => `dst-${String(i).padStart(2, '0')}`);
  const t1 = new Map<number, number[]>(options.nodes.map((n) => [n, []]));
  const fanOuts = new Map<number, FanOut[]>(options.nodes.map((n) => [n, []]));
  for (let r = 0; r < options.rounds; r++)
    for (const n of options.nodes) {
      const destinations = all.slice(0, n);
      const steps = [
        async () => {
          const one = await copyToAll(store, [BASELINE_DESTINATION], rateMiBps(n), options.fromPartialCopies);
          await verifyAndRemove(store, [BASELINE_DESTINATION], sha256);
          t1.get(n)!.push(one.doneMs[0]!);
        },
        async () => {
          const fan = await copyToAll(
            store,
            destinations,
            rateMiBps(n),
            options.fromPartialCopies,
            options.conductors,
          );
          await verifyAndRemove(store, destinations, sha256);
          fanOuts.get(n)!.push(fan);
        },
      ];
      // Alternate the order so neither side always runs on a warmer page cache.
      if (r % 2 === 1) steps.reverse();
      for (const step of steps) await step();
      const fan = fanOuts.get(n)!.at(-1)!;
      console.log(
        `one copy, round ${r + 1}/${options.rounds}, N=${n}: T1 ${round(t1.get(n)!.at(-1)!, 0)} ms; ` +
          `Tmax ${round(Math.max(...fan.doneMs), 0)} ms, p50 ${round(percentile(fan.doneMs, 50), 0)} ms; ` +
          `origin sent ${round(fan.originImages, 2)} images`,
      );
    }
  const rows = options.nodes.map((n) => summarize(n, t1.get(n)!, fanOuts.get(n)!, options.fromPartialCopies));
  console.table(
    rows.map((r) => ({
      nodes: r.nodes,
      pieces: r.pieces,
      'T1 ms': `${r.t1Ms.median} (${r.t1Ms.spread})`,
      'Tmax ms': `${r.tmaxMs.median} (${r.tmaxMs.spread})`,
      'p50 ms': `${r.p50Ms.median} (${r.p50Ms.spread})`,
      'Tmax/T1': `${r.tmaxPerT1.median} (${r.tmaxPerT1.spread})`,
      'p50/T1': `${r.p50PerT1.median} (${r.p50PerT1.spread})`,
      'origin sent (images)': `${r.originImagesSent.median} (${r.originImagesSent.spread})`,
      [`<= ${GOAL}`]: r.met,
    })),
  );
  return {
    setup: {
      imageMiB: IMAGE_MIB,
      pieces: PIECES,
      perNodeReadAndWriteMiBPerSecond: Object.fromEntries(options.nodes.map((n) => [n, rateMiBps(n)])),
      nodeReadLimit: READ_LIMIT,
      fromPartialCopies: options.fromPartialCopies,
      conductors: options.conductors ?? 1,
      theoryOneCopyMs: Object.fromEntries(options.nodes.map((n) => [n, (IMAGE_MIB / rateMiBps(n)) * 1000])),
      how: 'in-process CopyWorkflow + SourceSelector + holder index + NodeLockManager + NodeBandwidth on a temp folder, fsync off; baseline and fan-out interleaved per round; every destination verified (meta sha256 and file hash)',
    },
    rounds: options.rounds,
    rows,
  };
}
