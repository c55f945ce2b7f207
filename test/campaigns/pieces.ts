import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pieceBytesFor } from '@app/image-store';
import { sleep, until } from '../support/async';
import type { ChildProcessPool } from '../support/child-processes';
import { type Result, ResultsTap, errorLines, publishConfirmed } from '../support/conductor-harness';
import { pieceDigestsOfFile, sha256OfFile } from '../support/image-store-fixtures';
import { TestCell } from '../support/test-cell';
import { CampaignFs, lockEnvOf, lockTimingsOn } from './campaign-fs';
import { type CampaignRun, type Cleanups, adminToken, bySize, tally } from './campaign-kit';
import { ConductorFleet } from './conductor-fleet';
import { JobEventsTap, litter } from './pieces-cell';
import { PIECE_FAULT_KINDS, type PieceFaultKind, type PieceFaultRecord, strike } from './pieces-strikes';
import { judgeRound, pieceFigures } from './pieces-judge';

const MiB = 1024 * 1024;

export interface PiecesParams {
  conductors: number;
  /** Nodes each round's image is fanned out to (plus its source). */
  destinations: number;
  rounds: number;
  /** Image sizes (MiB, a few KiB less: the last piece is short). */
  imageMiB: [number, number];
  /** NODE_READ_BPS and NODE_WRITE_BPS of every conductor. */
  capBps: number;
  copyConcurrency: number;
  /** Faults besides one of each kind, of seeded kinds; all spread over the rounds in seeded order. */
  extraFaults: number;
  /** How long a fault waits for a moment mid-fan-out before it is carried over to the next round. */
  strikeWaitMs: number;
  /** Waiting for a round's answers (and its follow-ups'). */
  roundSettleMs: number;
  conductorHardTimeoutMs: number;
}

export const PIECES_SIZES = {
  ci: {
    conductors: 2,
    destinations: 10,
    rounds: 3,
    imageMiB: [24, 40],
    capBps: 16 * MiB,
    copyConcurrency: 6,
    extraFaults: 2,
    strikeWaitMs: 8_000,
    roundSettleMs: 60_000,
    conductorHardTimeoutMs: 300_000,
  },
  large: {
    conductors: 3,
    destinations: 24,
    rounds: 8,
    imageMiB: [40, 64],
    capBps: 16 * MiB,
    copyConcurrency: 10,
    extraFaults: 12,
    strikeWaitMs: 10_000,
    roundSettleMs: 180_000,
    conductorHardTimeoutMs: 1_800_000,
  },
} satisfies Record<string, PiecesParams>;

export function piecesTestTimeoutMs(run: CampaignRun): number {
  const p = bySize(run, PIECES_SIZES);
  return (p.rounds + EXTRA_ROUNDS) * (p.roundSettleMs + 2 * p.strikeWaitMs) + 120_000;
}

export interface PiecesOutcome {
  violations: string[];
  figures: Record<string, unknown>;
}

/** Rounds run past the planned ones while faults are left that found no moment mid-fan-out. */
const EXTRA_ROUNDS = 2;

/** How long the conductors' own leftover sweep gets, once the cell is idle, to leave nothing behind. */
const LITTER_WAIT_MS = 30_000;

/**
 * The pieces campaign (issue 27): rounds of one image, imported on one node, fanned out to many by a
 * pre-cache job or by copy requests without a source, so that the copies read verified pieces from each
 * other's partial files; meanwhile conductors are SIGKILLed and SIGSTOPped past the stale time, running
 * copies are cancelled (their partial removed under their readers) and announced pieces of a copy in
 * progress are damaged on disk. Every destination must end verified, every request and job answered
 * consistently, and nothing left once idle.
 */
export async function runPiecesCampaign(
  run: CampaignRun,
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
): Promise<PiecesOutcome> {
  // Conductors that end by themselves are started again only while the campaign runs: the pool's kills
  // after it must not start new ones into a cell being removed.
  const running = { now: true };
  try {
    return await runCampaign(run, pool, cleanups, running);
  } finally {
    running.now = false;
  }
}

async function runCampaign(
  run: CampaignRun,
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
  running: { now: boolean },
): Promise<PiecesOutcome> {
  const p: PiecesParams = bySize(run, PIECES_SIZES);
  const startedAt = performance.now();
  const elapsed = () => Math.round(performance.now() - startedAt);
  const violations: string[] = [];
  const timings = lockTimingsOn(run.fs);

  const source = 'src';
  const destinations = Array.from({ length: p.destinations }, (_, i) => `n-${i}`);
  const sharedFs = new CampaignFs(run.fs);
  cleanups.add('shared file system', () => sharedFs.stop());
  const folder = await sharedFs.folder('pieces');
  const cell = await TestCell.create({ nodes: [source, ...destinations], root: folder.roots[0] });
  cleanups.add('cell', () => (run.fs === 'local' ? cell.cleanup() : cell.removeTopology()));
  const tap = await ResultsTap.open(cell.topology);
  cleanups.add('results tap', () => tap.close());
  const jobTap = await JobEventsTap.open(cell.topology);
  cleanups.add('job events tap', () => jobTap.close());

  const clientOf = new Map<string, number>();
  const fleet = new ConductorFleet(
    pool,
    (id) =>
      cell.conductorEnv({
        CACHE_ROOT: folder.rootFor(clientOf.get(id) ?? clientOf.set(id, clientOf.size).size - 1),
        COPY_CONCURRENCY: String(p.copyConcurrency),
        MAX_ATTEMPTS: '10',
        SHUTDOWN_GRACE_MS: '1000',
        LOCK_WAIT_MS: '20000',
        ...lockEnvOf(timings),
        SHARE_PIECES: 'on',
        NODE_READ_BPS: String(p.capBps),
        NODE_WRITE_BPS: String(p.capBps),
        // The sweep collects what killed copies left (locks, partials, records) soon after the stale time.
        LEFTOVER_SWEEP_MS: '1000',
        RESUMABLE_KEEP_MS: '0',
      }),
    adminToken(run),
    p.conductorHardTimeoutMs,
  );
  cleanups.add('status sampler', () => fleet.stopSampling());
  let nextConductor = 0;
  const newId = () =>
    `pieces-${String.fromCharCode(97 + (nextConductor % 26))}${Math.floor(nextConductor++ / 26) || ''}`;
  // One that ends by itself (a hang exit on a stalled mount, a crash) is a violation, and is started
  // again as systemd would, so that the run goes on to tell the rest.
  const exits: Array<{ id: string; code: number | null; signal: string | null }> = [];
  fleet.onExit((member, exit) => {
    if (!running.now) return;
    exits.push({ id: member.id, ...exit });
    void fleet
      .start(newId())
      .catch((error: unknown) => violations.push(`restart after ${member.id} ended: ${String(error)}`));
  });
  await Promise.all(Array.from({ length: p.conductors }, () => fleet.start(newId())));
  fleet.startSampling(1_000);

  // The plan: one fault of each kind and `extraFaults` of seeded kinds, in seeded order, spread over the
  // rounds; each round's fan-out by a job or by requests (both kinds in the first two rounds).
  const planRng = run.rng.fork('plan');
  const faultRng = run.rng.fork('faults');
  const faultPlan = faultRng.shuffle<PieceFaultKind>([
    ...PIECE_FAULT_KINDS,
    ...Array.from({ length: p.extraFaults }, () => faultRng.pick(PIECE_FAULT_KINDS)),
  ]);
  const perRound = Math.ceil(faultPlan.length / p.rounds);
  const firstKind = planRng.pick(['job', 'requests'] as const);
  const faults: PieceFaultRecord[] = [];
  const rounds: Array<Record<string, unknown>> = [];
  let carried: PieceFaultKind[] = [];
  const ids: string[] = [];

  // Faults that found no moment mid-fan-out in their round go to the next; up to EXTRA_ROUNDS more
  // rounds are run for the ones still left after the last.
  for (let round = 0; round < p.rounds || (carried.length > 0 && round < p.rounds + EXTRA_ROUNDS); round++) {
    const kind =
      round === 1
        ? firstKind === 'job'
          ? 'requests'
          : 'job'
        : round === 0
          ? firstKind
          : planRng.pick(['job', 'requests'] as const);
    const imageId = `pieces-${round}.img`;
    const bytes = planRng.int(p.imageMiB[0], p.imageMiB[1]) * MiB - planRng.int(1, 4096);
    const seed = await cell.seed(source, imageId, bytes);
    const digests = await pieceDigestsOfFile(
      cell.store.entries.imagePath(source, imageId),
      pieceBytesFor(bytes)!,
    );
    const jobId = `pieces-job-${round}`;
    const requestOf = (node: string) => (kind === 'job' ? `${jobId}.${node}` : `pieces-${round}-${node}`);
    const roundIds = destinations.map(requestOf);
    ids.push(...roundIds);

    const roundStarted = performance.now();
    if (kind === 'job')
      await publishConfirmed(cell.topology.jobQueue.name, [
        { body: { v: 1, type: 'precache', jobId, imageId, nodes: destinations } },
      ]);
    else
      await publishConfirmed(
        cell.topology.requestQueue.name,
        destinations.map((node) => {
          const requestId = requestOf(node);
          // No source: the conductor picks one, and the copy reads from copies in progress too.
          const body: Record<string, unknown> = { v: 1, requestId, imageId, destination: node };
          if (planRng.chance(0.5)) Object.assign(body, { sha256: seed.sha256, size: seed.size });
          return { body, messageId: requestId };
        }),
      );

    // This round's faults, one at a time, each at a seeded moment and then mid-fan-out.
    const todo = [...carried, ...faultPlan.slice(round * perRound, (round + 1) * perRound)];
    carried = [];
    const roundFaults: PieceFaultRecord[] = [];
    for (const fault of todo) {
      await sleep(faultRng.int(100, 900));
      const done = await strike(
        fault,
        {
          root: cell.root,
          rootOf: (id) => folder.rootFor(clientOf.get(id) ?? 0),
          staleMs: timings.staleMs,
          imageId,
          digests,
          fleet,
          rng: faultRng,
          requestOf,
          jobQueue: cell.topology.jobQueue.name,
          replace: () => fleet.start(newId()),
          elapsed,
          round,
        },
        p.strikeWaitMs,
      );
      if (done) roundFaults.push(done);
      else carried.push(fault);
    }
    faults.push(...roundFaults);

    const finals = await tap.finalsWithin(roundIds, p.roundSettleMs, violations);
    const firstAnswersMs = Math.round(performance.now() - roundStarted);
    const job =
      kind === 'job'
        ? await until(
            async () => {
              const s = await cell.store.jobs.status(jobId);
              return s?.state === 'done' ? s : undefined;
            },
            `job ${jobId} done`,
            p.roundSettleMs,
          ).catch((error: Error) => void violations.push(error.message))
        : undefined;
    // The job-result event goes out right after the last node's outcome is recorded.
    if (job)
      await until(async () => jobTap.results(jobId).length > 0, `job ${jobId}'s result`, 5_000).catch(
        () => undefined,
      );

    // Victims of a cancel failed (CANCELLED): asked again.
    const again = destinations.filter((node) => finals.get(requestOf(node))?.status === 'failed');
    const againIds = again.map((node) => `pieces-${round}-again-${node}`);
    if (again.length > 0)
      await publishConfirmed(
        cell.topology.requestQueue.name,
        again.map((node, i) => ({
          body: { v: 1, requestId: againIds[i]!, imageId, destination: node },
          messageId: againIds[i]!,
        })),
      );
    const againFinals = await tap.finalsWithin(againIds, p.roundSettleMs, violations);
    ids.push(...againIds);

    judgeRound(
      {
        round,
        kind,
        jobId,
        requestOf,
        destinations,
        faults: roundFaults,
        tap,
        finals,
        againFinals,
        job,
        jobTap,
      },
      violations,
    );
    // Every destination holds the image: its file hashed here through every client's mount (a page cache
    // of one client can show other bytes than the file has), and a meta that describes it.
    let corrupt = 0;
    for (const node of destinations) {
      const meta = await cell.store.copies.verifiedImage(node, imageId, seed);
      const views: string[] = [];
      for (const [client, root] of folder.roots.entries()) {
        const file = path.join(root, path.relative(cell.root, cell.store.entries.imagePath(node, imageId)));
        const sha256 = await sha256OfFile(file).catch((error: Error) => `unreadable: ${error.message}`);
        if (sha256 !== seed.sha256) views.push(`sha256 ${sha256} through client ${client}`);
      }
      if (views.length > 0 || !meta) {
        corrupt++;
        violations.push(
          `${imageId} on ${node}: ${views.length > 0 ? views.join(', ') : 'sha256 ok'}, meta ${meta ? 'ok' : 'missing or wrong'}`,
        );
      }
    }
    rounds.push({
      round,
      kind,
      imageId,
      bytes,
      pieces: digests.length,
      faults: roundFaults.map((f) => f.kind),
      carriedOver: carried,
      fanOutMs: firstAnswersMs,
      // One copy of the image at the cap, the least a copy can take: the fan-out's yardstick.
      oneCopyAtCapMs: Math.round((bytes / p.capBps) * 1000),
      askedAgain: again.length,
      corrupt,
    });
    // The round's image leaves the cell (the disk of a large run would fill up otherwise).
    await fleet.waitIdle(60_000).catch((error: unknown) => violations.push(String(error)));
    for (const node of [source, ...destinations])
      await cell.store.entries.deleteImage(node, imageId).catch(() => undefined);
  }
  for (const kind of carried)
    violations.push(`a ${kind} fault found no moment mid-fan-out, ${EXTRA_ROUNDS} extra rounds included`);

  // Nothing left once idle: the conductors' own sweep must collect what killed copies left.
  await fleet.waitIdle(60_000).catch((error: unknown) => violations.push(String(error)));
  const idleFrom = performance.now();
  let left: string[] = [];
  for (;;) {
    left = await litter(cell.root, timings.staleMs);
    if (left.length === 0 || performance.now() - idleFrom > LITTER_WAIT_MS) break;
    await sleep(250);
  }
  const litterGoneMs = left.length === 0 ? Math.round(performance.now() - idleFrom) : null;
  for (const l of left.slice(0, 20))
    violations.push(`left once idle (${LITTER_WAIT_MS / 1000} s after): ${l}`);
  await fleet.stopSampling();

  const conductors = fleet.conductors();
  for (const m of fleet.live())
    if (m.conductor.child.process.exitCode !== null) violations.push(`conductor ${m.id} exited`);
  for (const e of exits)
    violations.push(`conductor ${e.id} ended by itself (code ${e.code}, signal ${e.signal})`);
  const internal = conductors.flatMap((c) => c.logs().filter((l) => l.msg === 'unexpected error in a copy'));
  for (const l of internal.slice(0, 5)) violations.push(`INTERNAL error: ${JSON.stringify(l)}`);
  const pieces = pieceFigures(conductors, faults);
  const figures = {
    params: p,
    lockTimings: timings,
    durationMs: elapsed(),
    conductorsStarted: fleet.members.length,
    conductorExits: exits.length,
    requests: ids.length,
    rounds,
    faults: tally(faults.map((f) => f.kind)),
    faultLog: faults,
    faultsMissed: carried.length,
    corrupt: rounds.reduce((n, r) => n + Number(r.corrupt), 0),
    ...pieces,
    results: {
      final: tally(
        ids
          .map((id) => tap.final(id))
          .map((r: Result | undefined) =>
            r ? `${r.status}${r.reason ? `:${String(r.reason)}` : ''}` : 'none',
          ),
      ),
      duplicateFinals: ids.reduce(
        (n, id) => n + Math.max(0, tap.of(id).filter((r) => r.retryable !== true).length - 1),
        0,
      ),
    },
    lockTakeovers: fleet.total('lockTakeovers'),
    locksLost: fleet.total('locksLost'),
    litterWhenIdle: left.length,
    litterGoneAfterIdleMs: litterGoneMs,
    errorLogLines: errorLines(conductors).length,
  };
  return { violations, figures };
}
