import { performance } from 'node:perf_hooks';
import { inspectLocks } from '@app/locking';
import type { ChildProcessPool } from '../support/child-processes';
import {
  type Result,
  ResultsTap,
  answeredLines,
  copiesPerDestination,
  errorLines,
  publishConfirmed,
} from '../support/conductor-harness';
import { sha256OfFile } from '../support/image-store-fixtures';
import { TestCell } from '../support/test-cell';
import { CampaignFs, lockEnvOf, lockTimingsOn } from './campaign-fs';
import { type CampaignRun, type Cleanups, bySize, tally, adminToken } from './campaign-kit';
import { sleep } from '../support/async';
import { FinalPathsWatcher, TmpOverlapSampler, judgeLeftovers } from '../support/cell-observers';
import { ConductorFleet, type FleetMember } from './conductor-fleet';

const KiB = 1024;
const MiB = 1024 * KiB;

export interface ChaosParams {
  nodes: number;
  images: number;
  /** Of `images`, how many are big. */
  bigImages: number;
  smallBytes: [number, number];
  bigBytes: number;
  /** Each (image, destination) pair is requested 1..this many times (duplicates: at-least-once traffic). */
  requestsPerPair: number;
  conductors: number;
  faultWindowMs: number;
  faultGapMs: [number, number];
  /**
   * Strikes that wait until a conductor is seen holding a destination (exclusive) lock and hit it frozen,
   * so that every seed has faults that bite; they come first, in seeded order among the others.
   */
  targeted: { kill: number; pause: number };
  /** How long a targeted strike waits for a holder before it counts as a miss (a violation). */
  holderWaitMs: number;
  /** Waiting for every final result after the fault window. */
  settleMs: number;
  conductorHardTimeoutMs: number;
}

export const CHAOS_SIZES = {
  ci: {
    nodes: 10,
    images: 12,
    bigImages: 3,
    smallBytes: [64 * KiB, 2 * MiB],
    bigBytes: 32 * MiB,
    requestsPerPair: 4,
    conductors: 3,
    faultWindowMs: 24_000,
    faultGapMs: [500, 1_500],
    targeted: { kill: 2, pause: 2 },
    holderWaitMs: 20_000,
    settleMs: 90_000,
    conductorHardTimeoutMs: 240_000,
  },
  large: {
    nodes: 12,
    images: 30,
    bigImages: 5,
    smallBytes: [64 * KiB, 4 * MiB],
    bigBytes: 96 * MiB,
    requestsPerPair: 5,
    conductors: 3,
    faultWindowMs: 240_000,
    faultGapMs: [500, 2_000],
    targeted: { kill: 4, pause: 4 },
    holderWaitMs: 20_000,
    settleMs: 300_000,
    conductorHardTimeoutMs: 1_800_000,
  },
} satisfies Record<string, ChaosParams>;

export function chaosTestTimeoutMs(run: CampaignRun): number {
  const p = bySize(run, CHAOS_SIZES);
  // Targeted strikes may run past the window while they wait for a holder.
  return p.faultWindowMs + (p.targeted.kill + p.targeted.pause) * p.holderWaitMs + p.settleMs + 120_000;
}

/** A targeted strike that has seen no writer for this long publishes a reserved pair. */
const QUIET_BEFORE_MORE_WORK_MS = 1_000;

type FaultKind = 'kill' | 'pause' | 'restart';

/** The cell's lock folders, as the strikes look at them (with the conductors' LOCK_STALE_MS). */
interface LockFolders {
  root: string;
  staleMs: number;
}

interface FaultRecord {
  kind: FaultKind;
  victim: string;
  /** A strike that waited for a destination-lock holder (strikeHolder); a miss is a violation. */
  targeted: boolean;
  /** The victim held at least one lock entry when the signal went out (looked at while it was frozen). */
  caughtHolding: boolean;
  /** One of them was a destination (exclusive) lock. */
  caughtWriter: boolean;
  atMs: number;
  pauseMs?: number;
  replacement?: string;
  exit?: { code: number | null; signal: string | null };
}

export interface ChaosOutcome {
  violations: string[];
  figures: Record<string, unknown>;
}

/**
 * Campaign 1: several conductors on one cell, hundreds of copy requests over many node pairs, and a
 * driver that SIGKILLs, SIGSTOPs (past LOCK_STALE_MS) and restarts conductors at seeded random moments.
 * Returns the violations of the promises (empty when they held) and the figures of the run.
 */
export async function runConductorChaos(
  run: CampaignRun,
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
): Promise<ChaosOutcome> {
  const p: ChaosParams = bySize(run, CHAOS_SIZES);
  const rng = run.rng;
  const startedAt = performance.now();
  const elapsed = () => Math.round(performance.now() - startedAt);
  const violations: string[] = [];
  // The conductors' lock timings, fit for the file system (on a FUSE one, the short local timings lose
  // locks to slow heartbeats: campaign-fs.ts); the strikes and the judges go by the same.
  const timings = lockTimingsOn(run.fs);

  const nodes = Array.from({ length: p.nodes }, (_, i) => `node-${i}`);
  // CAMPAIGN_FS: the cell on a shared file system, conductors spread over two of its clients.
  const sharedFs = new CampaignFs(run.fs);
  cleanups.add('shared file system', () => sharedFs.stop());
  const folder = await sharedFs.folder('chaos');
  const cell = await TestCell.create({ nodes, root: folder.roots[0] });
  // On a bed, the bed's stop takes the whole file system away: removing a large cell file by file through
  // FUSE first outlasted the clean-up hook (CephFS, large, seed 24011).
  cleanups.add('cell', () => (run.fs === 'local' ? cell.cleanup() : cell.removeTopology()));
  const clientOf = new Map<string, number>();

  // Images: sizes from the seed; each lives on one node, a few on two.
  const planRng = rng.fork('plan');
  const images = Array.from({ length: p.images }, (_, i) => {
    const big = i < p.bigImages;
    const bytes = big ? p.bigBytes - planRng.int(0, 255) : planRng.int(p.smallBytes[0], p.smallBytes[1]);
    const holders = [nodes[i % nodes.length]!];
    if (planRng.chance(0.2)) holders.push(nodes[(i + 3) % nodes.length]!);
    return { imageId: `img-${i}${big ? '-big' : ''}.qcow2`, bytes, holders };
  });
  const seeds = new Map<string, { sha256: string; size: number }>();
  for (const image of images) {
    seeds.set(image.imageId, await cell.seed(image.holders[0]!, image.imageId, image.bytes));
    // A second holder gets the same bytes, imported from the first one's published file.
    for (const extra of image.holders.slice(1))
      await cell.store.imports.importImage(
        extra,
        image.imageId,
        cell.store.entries.imagePath(image.holders[0]!, image.imageId),
      );
  }

  // Requests: every image to every node that lacks it, each pair 1..requestsPerPair times, in one of four
  // shapes (trust the source meta, checksum and size, explicit source, checksum only). The requests of a
  // pair are published together, so that they reach different conductors at once and contend for the
  // destination lock (a paused or killed holder then has waiters that must take it over); pairs in
  // seeded random order.
  type Sent = { requestId: string; imageId: string; destination: string; shape: string };
  const groups: Array<Array<{ sent: Sent; body: Record<string, unknown> }>> = [];
  const pairs: Array<{ imageId: string; destination: string }> = [];
  let requestCount = 0;
  for (const image of images) {
    const seed = seeds.get(image.imageId)!;
    for (const destination of nodes.filter((n) => !image.holders.includes(n))) {
      pairs.push({ imageId: image.imageId, destination });
      const group: (typeof groups)[number] = [];
      const copies = planRng.int(1, p.requestsPerPair);
      for (let k = 0; k < copies; k++) {
        const shape = planRng.weighted([
          ['meta', 3],
          ['checksum', 3],
          ['source', 2],
          ['sha-only', 1],
        ] as const);
        const requestId = `chaos-${requestCount++}`;
        const body: Record<string, unknown> = { v: 1, requestId, imageId: image.imageId, destination };
        if (shape === 'checksum') Object.assign(body, { sha256: seed.sha256, size: seed.size });
        if (shape === 'sha-only') body.sha256 = seed.sha256;
        if (shape === 'source') body.source = planRng.pick(image.holders);
        group.push({ sent: { requestId, imageId: image.imageId, destination, shape }, body });
      }
      groups.push(group);
    }
  }
  const ordered = planRng.shuffle(groups);
  const requests = ordered.flat();
  // A reserve of big-image pairs, held back from the steady publishing: a targeted strike that sees no
  // writer for a while publishes one (a copy of a big image holds its destination lock long enough to be
  // seen), so strikes late in a slow run still find holders; what is left goes out after the fault driver.
  const bigGroups = ordered.filter(
    (g) => images.find((i) => i.imageId === g[0]!.sent.imageId)!.bytes > p.smallBytes[1],
  );
  const reserve = bigGroups.slice(
    0,
    Math.min(Math.floor(bigGroups.length / 2), 3 * (p.targeted.kill + p.targeted.pause)),
  );
  const steady = ordered.filter((g) => !reserve.includes(g)).flat();
  const publishGroup = (group: (typeof groups)[number]) =>
    publishConfirmed(
      cell.topology.requestQueue.name,
      group.map((r) => ({ body: r.body, messageId: r.sent.requestId })),
    );
  let reserveReleased = 0;
  const releaseReserve = async (): Promise<boolean> => {
    const group = reserve.shift();
    if (!group) return false;
    reserveReleased++;
    await publishGroup(group);
    return true;
  };

  const tap = await ResultsTap.open(cell.topology);
  cleanups.add('results tap', () => tap.close());
  const watcher = new FinalPathsWatcher();
  cleanups.add('final-path watcher', () => watcher.stop());
  for (const pair of pairs)
    watcher.watch(cell.store.entries.imagePath(pair.destination, pair.imageId), seeds.get(pair.imageId)!);
  // Sources too: nobody may ever modify a published image in place.
  for (const image of images)
    for (const holder of image.holders)
      watcher.watch(cell.store.entries.imagePath(holder, image.imageId), seeds.get(image.imageId)!);

  const fleet = new ConductorFleet(
    pool,
    (id) =>
      cell.conductorEnv({
        CACHE_ROOT: folder.rootFor(clientOf.get(id) ?? clientOf.set(id, clientOf.size).size - 1),
        COPY_CONCURRENCY: '4',
        MAX_ATTEMPTS: '10',
        SHUTDOWN_GRACE_MS: '1000',
        LOCK_WAIT_MS: '20000',
        ...lockEnvOf(timings),
      }),
    adminToken(run),
    p.conductorHardTimeoutMs,
  );
  cleanups.add('status sampler', () => fleet.stopSampling());
  let nextConductor = 0;
  const newId = () =>
    `chaos-${String.fromCharCode(97 + (nextConductor % 26))}${Math.floor(nextConductor++ / 26) || ''}`;
  const started = await Promise.all(Array.from({ length: p.conductors }, () => fleet.start(newId())));
  for (const m of started) {
    const staleMs = await fleet.lockStaleMs(m);
    if (staleMs !== timings.staleMs)
      throw new Error(
        `conductor ${m.id} runs with LOCK_STALE_MS ${staleMs}, the campaign's is ${timings.staleMs}`,
      );
  }
  fleet.startSampling(1_000);
  const sampler = new TmpOverlapSampler(cell.root, nodes, (id) =>
    fleet.resumedRecently(id, timings.updateMs + 1_500),
  );
  cleanups.add('overlap sampler', () => sampler.stop());

  // Publishing: spread over the first three quarters of the fault window, in small confirmed batches.
  const publishing = (async () => {
    const batches = Math.max(1, Math.floor((p.faultWindowMs * 0.75) / 250));
    const perBatch = Math.ceil(steady.length / batches);
    for (let i = 0; i < steady.length; i += perBatch) {
      await publishGroup(steady.slice(i, i + perBatch));
      await sleep(250);
    }
  })();

  // The fault driver: one fault at a time. The plan (kinds, gaps, pause lengths) comes from the seed:
  // first the targeted strikes and one restart in seeded order, then random kinds until the window ends.
  // A targeted strike waits until a live conductor is seen holding a destination lock and freezes it while
  // it still does, so that the faults bite with any seed; the others hit at their seeded moment.
  const faultRng = rng.fork('faults');
  // Victims from their own stream: how often a strike looks again depends on timing, the plan must not.
  const victimRng = rng.fork('victims');
  const faults: FaultRecord[] = [];
  const locks: LockFolders = { root: cell.root, staleMs: timings.staleMs };
  const firstKinds = faultRng.shuffle<{ kind: FaultKind; targeted: boolean }>([
    ...Array.from({ length: p.targeted.kill }, () => ({ kind: 'kill' as const, targeted: true })),
    ...Array.from({ length: p.targeted.pause }, () => ({ kind: 'pause' as const, targeted: true })),
    { kind: 'restart', targeted: false },
  ]);
  const faultDeadline = performance.now() + p.faultWindowMs;
  while (firstKinds.length > 0 || performance.now() < faultDeadline) {
    await sleep(faultRng.int(p.faultGapMs[0], p.faultGapMs[1]));
    const { kind, targeted } = firstKinds.shift() ?? {
      kind: faultRng.weighted([
        ['kill', 4],
        ['pause', 4],
        ['restart', 2],
      ] as const),
      targeted: false,
    };
    const pauseMs = timings.staleMs + faultRng.int(600, 1_600);
    const restartGapMs = faultRng.int(100, 1_200);
    const struck = targeted
      ? await strikeHolder(fleet, locks, victimRng, p.holderWaitMs, releaseReserve)
      : await strikeAny(fleet, locks, victimRng);
    if (targeted && !struck?.caughtWriter)
      violations.push(
        `targeted ${kind} (fault #${faults.length}) saw no conductor holding a destination lock within ${p.holderWaitMs} ms`,
      );
    if (!struck) continue;
    const { victim, caughtHolding, caughtWriter } = struck;
    const record: FaultRecord = {
      kind,
      targeted,
      victim: victim.id,
      caughtHolding,
      caughtWriter,
      atMs: elapsed(),
    };
    if (kind === 'kill') {
      await fleet.kill(victim);
      await sleep(restartGapMs);
      record.replacement = (await fleet.start(newId())).id;
    } else if (kind === 'pause') {
      record.pauseMs = pauseMs;
      try {
        await sleep(record.pauseMs);
      } finally {
        fleet.resume(victim);
      }
    } else {
      fleet.resume(victim, false);
      const exit = await fleet.stop(victim);
      record.exit = { code: exit.code, signal: exit.signal };
      if (exit.code !== 0) violations.push(`graceful stop of ${victim.id} exited ${JSON.stringify(exit)}`);
      record.replacement = (await fleet.start(newId())).id;
    }
    faults.push(record);
  }
  await publishing;
  const reserveReleasedByStrikes = reserveReleased;
  while (await releaseReserve());

  // Every request gets a final result; then the cell goes idle.
  const ids = requests.map((r) => r.sent.requestId);
  let finals = new Map<string, Result>();
  try {
    finals = await tap.waitForFinal(ids, p.settleMs);
  } catch (error) {
    violations.push(String(error));
    for (const id of ids) if (tap.final(id)) finals.set(id, tap.final(id)!);
  }
  await fleet.waitIdle(60_000).catch((error: unknown) => violations.push(String(error)));
  await Promise.all(fleet.live().map((m) => fleet.sampleOne(m).catch(() => undefined)));
  await fleet.stopSampling();
  await sampler.stop();
  await watcher.stop();

  // 1. Nothing lost: a final result for every request, and a successful one.
  const lost = ids.filter((id) => !finals.has(id));
  const failedFinals = [...finals.values()].filter((r) => r.status === 'failed');
  for (const r of failedFinals.slice(0, 20))
    violations.push(`request ${r.requestId} failed for good: ${String(r.reason)} ${String(r.detail)}`);

  // 2. Nothing corrupt: every destination (and source) holds the source's bytes, hashed here; its meta agrees.
  let corrupt = 0;
  for (const pair of pairs) {
    const expected = seeds.get(pair.imageId)!;
    const file = cell.store.entries.imagePath(pair.destination, pair.imageId);
    const sha256 = await sha256OfFile(file).catch((error: Error) => `unreadable: ${error.message}`);
    const meta = await cell.store.copies.verifiedImage(pair.destination, pair.imageId, expected);
    if (sha256 !== expected.sha256 || !meta) {
      corrupt++;
      violations.push(
        `${pair.imageId} on ${pair.destination}: sha256 ${sha256}, meta ${meta ? 'ok' : 'missing or not matching'} (expected ${expected.sha256})`,
      );
    }
  }
  for (const image of images)
    for (const holder of image.holders)
      if (
        (await sha256OfFile(cell.store.entries.imagePath(holder, image.imageId))) !==
        seeds.get(image.imageId)!.sha256
      )
        violations.push(`source ${image.imageId} on ${holder} changed`);
  for (const problem of watcher.problems.slice(0, 20)) violations.push(`final-path reader: ${problem}`);

  // 3. No two holders at once.
  const realOverlaps = sampler.overlaps.filter((o) => o.kind === 'real');
  for (const o of realOverlaps.slice(0, 10))
    violations.push(
      `overlap: two writers of ${o.imageId} on ${o.node} at ${o.atMs} ms: ${JSON.stringify(o.attempts)}`,
    );

  // 4. Leftovers once idle: only killed conductors may have left lock entries or partial files, and a
  // last round (what the next copy or the cache cleaner does) collects all of them.
  const killedIds = new Set(fleet.members.filter((m) => m.state === 'killed').map((m) => m.id));
  const { lockLeft, tmpLeft, sweep, afterSweep } = await judgeLeftovers(
    cell.root,
    killedIds,
    (attemptId) => sampler.conductorOf(attemptId),
    timings,
    violations,
  );

  // 5. The conductors: still running, no unexpected error.
  const conductors = fleet.conductors();
  for (const m of fleet.live())
    if (m.conductor.child.process.exitCode !== null) violations.push(`conductor ${m.id} exited`);
  const internal = conductors.flatMap((c) => c.logs().filter((l) => l.msg === 'unexpected error in a copy'));
  for (const l of internal.slice(0, 5)) violations.push(`INTERNAL error: ${JSON.stringify(l)}`);

  const lines = answeredLines(conductors);
  const retries = conductors.flatMap((c) => c.logs().filter((l) => l.msg === 'copy failed, retry scheduled'));
  // A paused holder loses its lock (LOCK_LOST); a waiter behind a long pause may time out (LOCK_TIMEOUT).
  // Any other retryable failure (IO_ERROR, INTERNAL...) is not explained by these faults.
  for (const l of retries.filter((x) => x.reason !== 'LOCK_LOST' && x.reason !== 'LOCK_TIMEOUT').slice(0, 10))
    violations.push(`unexpected retry on ${String(l.conductorId)}: ${String(l.reason)}: ${String(l.detail)}`);
  const copies = copiesPerDestination(conductors);
  const faultFigures = Object.fromEntries(
    (['kill', 'pause', 'restart'] as const).map((kind) => {
      const of = faults.filter((f) => f.kind === kind);
      return [
        kind,
        {
          injected: of.length,
          targeted: of.filter((f) => f.targeted).length,
          caughtHolding: of.filter((f) => f.caughtHolding).length,
          caughtWriter: of.filter((f) => f.caughtWriter).length,
        },
      ];
    }),
  );
  const figures = {
    params: p,
    lockTimings: timings,
    durationMs: elapsed(),
    conductorsStarted: fleet.members.length,
    requests: requests.length,
    requestShapes: tally(requests.map((r) => r.sent.shape)),
    pairs: pairs.length,
    images: { count: images.length, big: p.bigImages, bytes: images.reduce((s, i) => s + i.bytes, 0) },
    faults: faultFigures,
    faultLog: faults,
    results: {
      final: tally([...finals.values()].map((r) => r.status)),
      resultMessages: tap.results.length,
      retryableResults: tap.results.filter((r) => r.retryable === true).length,
      duplicateFinals: tap.results.filter((r) => r.retryable !== true).length - finals.size,
    },
    reservedPairs: { held: reserveReleased + reserve.length, releasedByStrikes: reserveReleasedByStrikes },
    lost: lost.length,
    failed: failedFinals.length,
    corrupt,
    answered: {
      lines: lines.length,
      redelivered: lines.filter((l) => l.redelivered === true).length,
      laterAttempts: lines.filter((l) => Number(l.attempt) > 1).length,
      coalesced: lines.filter((l) => l.coalesced === true).length,
    },
    retriesByReason: tally(retries.map((l) => String(l.reason))),
    // Anything but a lost lock is unexpected under these faults: kept with its detail for a look.
    otherRetries: retries
      .filter((l) => l.reason !== 'LOCK_LOST')
      .slice(0, 10)
      .map((l) => ({ conductor: l.conductorId, requestId: l.requestId, reason: l.reason, detail: l.detail })),
    lockTakeovers: fleet.total('lockTakeovers'),
    locksLost: fleet.total('locksLost'),
    handedBack: fleet.total('handedBack'),
    copiesLogged: [...copies.values()].reduce((a, b) => a + b, 0),
    pairsCopiedTwiceOrMore: [...copies.values()].filter((n) => n > 1).length,
    overlaps: {
      real: realOverlaps.length,
      residual: sampler.overlaps.length - realOverlaps.length,
      samples: sampler.samples,
      maxPartialFilesPerImage: sampler.maxPartsPerImage,
    },
    finalPathReader: {
      rounds: watcher.rounds,
      looks: watcher.looks,
      hashed: watcher.hashed,
      problems: watcher.problems.length,
    },
    leftoversWhenIdle: {
      lockEntries: lockLeft.length,
      byMode: tally(lockLeft.map((l) => l.mode)),
      tmpFiles: tmpLeft.length,
      tmp: tmpLeft,
    },
    lastRound: sweep,
    leftoversAfterLastRound: afterSweep.locks.length + afterSweep.tmp.length,
    errorLogLines: errorLines(conductors).length,
  };
  return { violations, figures };
}

interface Strike {
  /** Frozen (SIGSTOPped): the caller kills it, or resumes it later. */
  victim: FleetMember;
  caughtHolding: boolean;
  /** One of them was the newest generation of a key's gate: a destination (exclusive) lock. */
  caughtWriter: boolean;
}

/**
 * A targeted strike: waits (up to `waitMs`) until a live conductor is seen holding a destination
 * (exclusive) lock, freezes it and looks again; if it released in between, it is resumed at once (a freeze
 * of a few milliseconds, far below the stale time, costs it no lock) and the wait goes on. On a miss, a
 * random live conductor is frozen and returned as the frozen look finds it (the caller counts the miss).
 * Never the last live conductor.
 */
async function strikeHolder(
  fleet: ConductorFleet,
  locks: LockFolders,
  rng: CampaignRun['rng'],
  waitMs: number,
  moreWork: () => Promise<unknown>,
): Promise<Strike | undefined> {
  const deadline = performance.now() + waitMs;
  let quietSince = performance.now();
  while (performance.now() < deadline) {
    const live = fleet.live();
    const writers = await lockHolders(locks, 'exclusive');
    const candidates = live.length < 2 ? [] : live.filter((m) => writers.has(m.id));
    if (candidates.length === 0 && performance.now() - quietSince > QUIET_BEFORE_MORE_WORK_MS) {
      await moreWork();
      quietSince = performance.now();
    }
    if (candidates.length > 0) {
      const victim = rng.pick(candidates);
      fleet.pause(victim);
      if ((await lockHolders(locks, 'exclusive')).has(victim.id))
        return { victim, caughtHolding: true, caughtWriter: true };
      fleet.resume(victim, false);
    }
    await sleep(20);
  }
  return strikeAny(fleet, locks, rng);
}

/** A strike at the seeded moment: any live conductor but the last, frozen first and then looked at. */
async function strikeAny(
  fleet: ConductorFleet,
  locks: LockFolders,
  rng: CampaignRun['rng'],
): Promise<Strike | undefined> {
  const live = fleet.live();
  if (live.length < 2) return undefined;
  const victim = rng.pick(live);
  fleet.pause(victim);
  const [any, writers] = await Promise.all([lockHolders(locks), lockHolders(locks, 'exclusive')]);
  return { victim, caughtHolding: any.has(victim.id), caughtWriter: writers.has(victim.id) };
}

/** The conductors that hold a lock entry (of `mode`, or any) in one look at the lock folders. */
async function lockHolders(locks: LockFolders, mode?: 'exclusive' | 'shared'): Promise<Set<string>> {
  const { entries } = await inspectLocks(locks.root, { staleMs: locks.staleMs, limit: 100_000 });
  return new Set(
    entries
      .filter((e) => mode === undefined || e.mode === mode)
      .map((e) => e.holder?.conductorId)
      .filter((id): id is string => id !== undefined),
  );
}
