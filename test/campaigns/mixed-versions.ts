import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { runProcess } from '../support/agent-cli';
import type { ChildProcessPool } from '../support/child-processes';
import { type Result, ResultsTap, answeredLines, publishConfirmed } from '../support/conductor-harness';
import { sha256OfFile } from '../support/image-store-fixtures';
import type { PreviousRelease } from '../support/previous-release';
import { TestCell } from '../support/test-cell';
import { sleep, until } from '../support/async';
import { FinalPathsWatcher, TmpOverlapSampler, judgeLeftovers } from '../support/cell-observers';
import { type CampaignRun, type Cleanups, adminToken, bySize, tally } from './campaign-kit';
import { ConductorFleet, type FleetMember } from './conductor-fleet';
import { judgePieceLists } from './piece-lists-oracle';

const KiB = 1024;
const MiB = 1024 * KiB;

export interface MixedParams {
  nodes: number;
  images: number;
  bigImages: number;
  smallBytes: [number, number];
  bigBytes: number;
  /** Copy requests published just before each step of the plan (they are handled while it happens). */
  requestsPerStep: number;
  /** Of those, how many are cancelled right after they are sent. */
  cancelsPerStep: number;
  /** Conductors of each release at the start (the rolling upgrade replaces every old one). */
  oldConductors: number;
  newConductors: number;
  /** Upgrade-and-roll-back rounds. */
  rounds: number;
  settleMs: number;
  conductorHardTimeoutMs: number;
}

export const MIXED_SIZES = {
  ci: {
    nodes: 6,
    images: 6,
    bigImages: 1,
    smallBytes: [64 * KiB, 1 * MiB],
    bigBytes: 16 * MiB,
    requestsPerStep: 8,
    cancelsPerStep: 1,
    oldConductors: 2,
    newConductors: 1,
    rounds: 1,
    settleMs: 90_000,
    conductorHardTimeoutMs: 300_000,
  },
  large: {
    nodes: 10,
    images: 20,
    bigImages: 4,
    smallBytes: [64 * KiB, 4 * MiB],
    bigBytes: 64 * MiB,
    requestsPerStep: 30,
    cancelsPerStep: 3,
    oldConductors: 2,
    newConductors: 2,
    rounds: 3,
    settleMs: 300_000,
    conductorHardTimeoutMs: 1_800_000,
  },
} satisfies Record<string, MixedParams>;

export function mixedTestTimeoutMs(run: CampaignRun): number {
  const p = bySize(run, MIXED_SIZES);
  return p.rounds * 120_000 + p.settleMs + 120_000;
}

const TIMINGS = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 25 };

type Release = 'old' | 'new';
type StepKind = 'kill' | 'upgrade' | 'rollback' | 'precache' | 'purge';

export interface MixedOutcome {
  violations: string[];
  figures: Record<string, unknown>;
}

/**
 * Old (the previous release, built from its commit) and new conductors in one cell, while copy requests,
 * cancels and jobs flow: a SIGKILL of a seeded victim, a rolling upgrade (each old conductor stopped and
 * replaced by a new one), a pre-cache and a purge job, and a roll-back (new ones replaced by old ones).
 * Oracles as the chaos campaign's: one consistent final answer per request, nothing lost or corrupt, never
 * two writers of one image, nothing left behind but what killed conductors left and a last round collects.
 */
export async function runMixedVersions(
  run: CampaignRun,
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
  previous: PreviousRelease,
): Promise<MixedOutcome> {
  const p: MixedParams = bySize(run, MIXED_SIZES);
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const violations: string[] = [];
  const nodes = Array.from({ length: p.nodes }, (_, i) => `node-${i}`);
  const cell = await TestCell.create({ nodes });
  cleanups.add('cell', () => cell.cleanup());

  // Images for copies (each on one node), one for the pre-cache job, one on every node for the purge.
  const planRng = run.rng.fork('plan');
  const images = Array.from({ length: p.images }, (_, i) => ({
    imageId: `mix-${i}.img`,
    bytes: i < p.bigImages ? p.bigBytes - planRng.int(0, 255) : planRng.int(p.smallBytes[0], p.smallBytes[1]),
    holder: nodes[i % nodes.length]!,
  }));
  const seeds = new Map<string, { sha256: string; size: number }>();
  for (const image of images)
    seeds.set(image.imageId, await cell.seed(image.holder, image.imageId, image.bytes));
  const precacheImage = 'mix-precache.img';
  seeds.set(precacheImage, await cell.seed(nodes[0]!, precacheImage, 512 * KiB));
  const purgeImage = 'mix-purge.img';
  const purgeFrom = nodes.slice(1, 1 + Math.max(2, Math.floor(p.nodes / 2)));
  seeds.set(purgeImage, await cell.seed(nodes[0]!, purgeImage, 256 * KiB));
  for (const node of purgeFrom)
    await cell.store.imports.importImage(
      node,
      purgeImage,
      cell.store.entries.imagePath(nodes[0]!, purgeImage),
    );

  // Copy requests in four shapes (source given or chosen by the conductor, checksum or trust the meta).
  type Sent = { requestId: string; imageId: string; destination: string; shape: string; cancelled: boolean };
  const sent: Sent[] = [];
  let counter = 0;
  const makeBatch = (count: number, cancels: number) =>
    Array.from({ length: count }, (_, k) => {
      const image = planRng.pick(images);
      const destination = planRng.pick(nodes.filter((n) => n !== image.holder));
      const shape = planRng.weighted([
        ['meta', 3],
        ['source', 3],
        ['checksum', 2],
      ] as const);
      const requestId = `mix-${counter++}`;
      const body: Record<string, unknown> = { v: 1, requestId, imageId: image.imageId, destination };
      if (shape === 'source') body.source = image.holder;
      if (shape === 'checksum')
        Object.assign(body, { sha256: seeds.get(image.imageId)!.sha256, size: image.bytes });
      return {
        sent: { requestId, imageId: image.imageId, destination, shape, cancelled: k < cancels },
        body,
      };
    });
  const publishBatch = async (batch: ReturnType<typeof makeBatch>) => {
    await publishConfirmed(
      cell.topology.requestQueue.name,
      batch.map((r) => ({ body: r.body, messageId: r.sent.requestId })),
    );
    sent.push(...batch.map((r) => r.sent));
    const cancels = batch.filter((r) => r.sent.cancelled);
    if (cancels.length > 0)
      await publishConfirmed(
        cell.topology.jobQueue.name,
        cancels.map((r) => ({ body: { v: 1, type: 'cancel', requestId: r.sent.requestId } })),
      );
  };

  const tap = await ResultsTap.open(cell.topology);
  cleanups.add('results tap', () => tap.close());
  const watcher = new FinalPathsWatcher();
  cleanups.add('final-path watcher', () => watcher.stop());
  for (const image of images)
    for (const node of nodes)
      watcher.watch(cell.store.entries.imagePath(node, image.imageId), seeds.get(image.imageId)!);

  const releaseOf = new Map<string, Release>();
  const fleet = new ConductorFleet(
    pool,
    () =>
      cell.conductorEnv({
        COPY_CONCURRENCY: '3',
        MAX_ATTEMPTS: '10',
        SHUTDOWN_GRACE_MS: '3000',
        LOCK_WAIT_MS: '20000',
        CONDUCTOR_BEAT_MS: '500',
        CONDUCTOR_DEAD_MS: '3000',
        // This release's copies read from copies in progress and write their records (.icc-swarms/)
        // beside the previous release's; the previous release does not know the setting.
        SHARE_PIECES: 'on',
      }),
    adminToken(run),
    p.conductorHardTimeoutMs,
    (id) => ({
      launcher: [],
      script: releaseOf.get(id) === 'old' ? previous.conductorScript : undefined,
      adminHost: '127.0.0.1',
    }),
  );
  cleanups.add('status sampler', () => fleet.stopSampling());
  let next = 0;
  const startConductor = (release: Release) => {
    const id = `${release}-${next++}`;
    releaseOf.set(id, release);
    return fleet.start(id);
  };
  await Promise.all([
    ...Array.from({ length: p.oldConductors }, () => startConductor('old')),
    ...Array.from({ length: p.newConductors }, () => startConductor('new')),
  ]);
  fleet.startSampling(1_000);
  const sampler = new TmpOverlapSampler(cell.root, nodes, (id) =>
    fleet.resumedRecently(id, TIMINGS.updateMs + 1_500),
  );
  cleanups.add('overlap sampler', () => sampler.stop());

  // The plan: per round a kill, the upgrade of every old conductor, a job, and a roll-back of one new one
  // to old (the last round ends upgraded, as an upgrade does); seeded order of the kill and the job.
  const stepRng = run.rng.fork('steps');
  const plan: StepKind[] = [];
  for (let round = 0; round < p.rounds; round++) {
    const job: StepKind = round % 2 === 0 ? 'precache' : 'purge';
    plan.push(...stepRng.shuffle<StepKind>(['kill', job]), 'upgrade', 'rollback');
  }
  plan.push('upgrade', 'purge');
  const log: Array<{ step: StepKind; atMs: number; detail: string }> = [];
  const jobs: Array<{ jobId: string; type: 'precache' | 'purge'; nodes: string[] }> = [];
  const victimRng = run.rng.fork('victims');
  const replace = async (member: FleetMember, release: Release, how: 'stop' | 'kill') => {
    if (how === 'kill') await fleet.kill(member);
    else {
      const exit = await fleet.stop(member);
      if (exit.code !== 0) violations.push(`graceful stop of ${member.id} exited ${JSON.stringify(exit)}`);
    }
    return (await startConductor(release)).id;
  };
  for (const step of plan) {
    const batch = makeBatch(p.requestsPerStep, p.cancelsPerStep);
    const publishing = publishBatch(batch);
    await sleep(stepRng.int(200, 800));
    let detail = '';
    if (step === 'kill') {
      const victim = victimRng.pick(fleet.live());
      detail = `${victim.id} SIGKILLed, replaced by ${await replace(victim, releaseOf.get(victim.id)!, 'kill')}`;
    } else if (step === 'upgrade') {
      const olds = fleet.live().filter((m) => releaseOf.get(m.id) === 'old');
      const done: string[] = [];
      for (const member of olds) done.push(`${member.id} -> ${await replace(member, 'new', 'stop')}`);
      detail = done.join(', ') || 'no old conductor left';
    } else if (step === 'rollback') {
      const news = fleet.live().filter((m) => releaseOf.get(m.id) === 'new');
      const member = victimRng.pick(news);
      // One roll-back by a graceful stop, the next by a crash (a new conductor dying mid-copy).
      const how = log.filter((l) => l.step === 'rollback').length % 2 === 0 ? 'stop' : 'kill';
      detail = `${member.id} (${how}) -> ${await replace(member, 'old', how)}`;
    } else {
      const jobId = `mix-${step}-${jobs.length}`;
      const targets = step === 'precache' ? nodes.filter((n) => n !== nodes[0]) : purgeFrom;
      const body =
        step === 'precache'
          ? { v: 1, type: 'precache', jobId, imageId: precacheImage, nodes: targets }
          : { v: 1, type: 'purge', jobId, imageId: purgeImage, nodes: targets };
      await publishConfirmed(cell.topology.jobQueue.name, [{ body }]);
      jobs.push({ jobId, type: step, nodes: targets });
      detail = `${jobId} on ${targets.join(',')}`;
    }
    await publishing;
    log.push({ step, atMs: elapsed(), detail });
  }

  // Every request one final answer; the jobs done; then the cell idle.
  const ids = sent.map((s) => s.requestId);
  const finals = await tap.finalsWithin(ids, p.settleMs, violations);
  for (const job of jobs) {
    const status = await until(
      async () => {
        const s = await cell.store.jobs.status(job.jobId);
        return s?.state === 'done' ? s : undefined;
      },
      `job ${job.jobId} done`,
      p.settleMs,
    ).catch((error: Error) => {
      violations.push(error.message);
      return undefined;
    });
    if (status && status.failed > 0)
      violations.push(`job ${job.jobId}: ${status.failed} nodes failed: ${JSON.stringify(status.outcomes)}`);
  }
  await fleet.waitIdle(60_000).catch((error: unknown) => violations.push(String(error)));
  await fleet.stopSampling();
  await sampler.stop();
  await watcher.stop();

  // 1. One consistent final answer per request: completed or already-present; a cancelled one may also
  // end CANCELLED. Duplicates (at-least-once) must agree.
  const lost = ids.filter((id) => !finals.has(id));
  const cancelledIds = new Set(sent.filter((s) => s.cancelled).map((s) => s.requestId));
  // A defect of 1.0.0, fixed in 1.1.0 (CHANGELOG.md): a request that joined a running copy of the same image
  // and destination was answered CANCELLED when the request that started the copy was cancelled. Tolerated
  // only when every conductor that answered it so is of the previous release and the cancel named is of a
  // cancelled request for the same pair; the same answer from a new conductor is a violation.
  const cancelledBy = new Map<string, string[]>();
  for (const member of fleet.members)
    for (const l of member.conductor.logs())
      if (l.msg === 'copy request cancelled')
        cancelledBy.set(String(l.requestId), [...(cancelledBy.get(String(l.requestId)) ?? []), member.id]);
  const oldReleaseCoalescedCancels: string[] = [];
  const isPreviousReleaseCancelDefect = (s: Sent, f: Result): boolean => {
    if (f.reason !== 'CANCELLED' || previous.version !== '1.0.0') return false;
    const cause = sent.find(
      (x) => x.requestId === /^request (\S+) was cancelled$/.exec(String(f.detail))?.[1],
    );
    const by = cancelledBy.get(s.requestId) ?? [];
    return (
      cause !== undefined &&
      cause.cancelled &&
      cause.imageId === s.imageId &&
      cause.destination === s.destination &&
      by.length > 0 &&
      by.every((id) => releaseOf.get(id) === 'old')
    );
  };
  for (const s of sent) {
    const all = tap.of(s.requestId).filter((r) => r.retryable !== true);
    const kinds = new Set(all.map((r) => (r.status === 'failed' ? `failed:${String(r.reason)}` : 'success')));
    if (kinds.size > 1)
      violations.push(`request ${s.requestId}: final answers disagree: ${[...kinds].join(', ')}`);
    const f = finals.get(s.requestId);
    if (f?.status !== 'failed' || (cancelledIds.has(s.requestId) && f.reason === 'CANCELLED')) continue;
    if (isPreviousReleaseCancelDefect(s, f)) oldReleaseCoalescedCancels.push(s.requestId);
    else violations.push(`request ${s.requestId} failed: ${String(f.reason)} ${String(f.detail)}`);
  }

  // 2. Nothing corrupt: every successful destination holds the seeded bytes (hashed here) and a meta that agrees.
  let corrupt = 0;
  const checked = new Set<string>();
  for (const s of sent) {
    const f = finals.get(s.requestId);
    const key = `${s.destination}/${s.imageId}`;
    if (!f || f.status === 'failed' || checked.has(key)) continue;
    checked.add(key);
    const expected = seeds.get(s.imageId)!;
    const sha256 = await sha256OfFile(cell.store.entries.imagePath(s.destination, s.imageId)).catch(
      (error: Error) => `unreadable: ${error.message}`,
    );
    const meta = await cell.store.copies.verifiedImage(s.destination, s.imageId, expected);
    if (sha256 !== expected.sha256 || !meta) {
      corrupt++;
      violations.push(`${key}: sha256 ${sha256}, meta ${meta ? 'ok' : 'missing or not matching'}`);
    }
  }
  for (const problem of watcher.problems.slice(0, 20)) violations.push(`final-path reader: ${problem}`);
  for (const job of jobs)
    for (const node of job.nodes) {
      const there = await cell.store.copies.verifiedImage(
        node,
        job.type === 'precache' ? precacheImage : purgeImage,
        seeds.get(job.type === 'precache' ? precacheImage : purgeImage)!,
      );
      if (job.type === 'precache' && !there) violations.push(`${job.jobId}: ${precacheImage} not on ${node}`);
      if (job.type === 'purge' && there) violations.push(`${job.jobId}: ${purgeImage} still on ${node}`);
    }

  // 3. Never two writers of one image at once.
  for (const o of sampler.overlaps.filter((x) => x.kind === 'real').slice(0, 10))
    violations.push(
      `overlap: two writers of ${o.imageId} on ${o.node} at ${o.atMs} ms: ${JSON.stringify(o.attempts)}`,
    );

  // 4. Leftovers: only killed conductors may leave lock entries or partial files; a last round takes them.
  const killedIds = new Set(fleet.members.filter((m) => m.state === 'killed').map((m) => m.id));
  const { lockLeft, tmpLeft, sweep } = await judgeLeftovers(
    cell.root,
    killedIds,
    (attemptId) => sampler.conductorOf(attemptId),
    TIMINGS,
    violations,
  );

  // 4b. Piece lists (written by this release only) met by the previous one: never a lie, never reported,
  // none left without its image once this release's cleaner ran (after the previous one's deleted some).
  const pieceLists = await judgePieceLists(
    cell.store,
    nodes,
    fleet.conductors().flatMap((c) => c.logs()),
    (args) => runProcess(process.execPath, [previous.agentScript, ...args]),
    TIMINGS,
    violations,
  );

  // 5. The shared folder's top level: nodes and the cell's own files only; conductor records only from
  // conductors of the new release (the old one writes none), each valid.
  for (const entry of await fsp.readdir(cell.root))
    if (
      !nodes.includes(entry) &&
      ![
        '.icc-header-key',
        '.icc-jobs',
        '.icc-cancels',
        '.icc-conductors',
        '.icc-answers',
        '.icc-swarms',
        '.rounds',
      ].includes(entry) &&
      !entry.startsWith('.seed-')
    )
      violations.push(`unexpected entry in CACHE_ROOT: ${entry}`);
  // Records of copies in progress: none once the cell is idle (a dead copy's went with the sweep).
  for (const image of await fsp.readdir(path.join(cell.root, '.icc-swarms')).catch(() => [] as string[]))
    violations.push(`a record of a copy in progress left when idle: .icc-swarms/${image}`);
  const records = await fsp.readdir(path.join(cell.root, '.icc-conductors')).catch(() => [] as string[]);
  // (A dot-name is a record being written: `.<id>.beat-*.tmp`, renamed into place by its beat.)
  for (const name of records.filter((n) => !n.startsWith('.'))) {
    const id = name.replace(/\.json$/, '');
    if (releaseOf.get(id) !== 'new')
      violations.push(`a conductor record not written by a new conductor: ${name}`);
  }

  // 6. Both releases did work side by side, and none of them failed inside.
  const conductors = fleet.conductors();
  const answered = answeredLines(conductors);
  const answeredBy = tally(answered.map((l) => releaseOf.get(String(l.conductorId)) ?? 'unknown'));
  for (const release of ['old', 'new'] as const)
    if (!answeredBy[release])
      violations.push(`no copy was answered by a conductor of the ${release} release`);
  for (const m of fleet.live())
    if (m.conductor.child.process.exitCode !== null) violations.push(`conductor ${m.id} exited`);
  for (const l of conductors
    .flatMap((c) => c.logs().filter((x) => x.msg === 'unexpected error in a copy'))
    .slice(0, 5))
    violations.push(`INTERNAL error: ${JSON.stringify(l)}`);
  const retries = conductors.flatMap((c) => c.logs().filter((l) => l.msg === 'copy failed, retry scheduled'));
  // A bad message is dead-lettered; the campaign sends none, so one means a release misread the other's.
  const deadLettered = conductors.flatMap((c) =>
    c.logs().filter((l) => String(l.msg).endsWith('dead-lettered') && l.reason !== 'CANCELLED'),
  );
  for (const l of deadLettered.slice(0, 5))
    violations.push(`dead-lettered by ${String(l.conductorId)}: ${JSON.stringify(l)}`);

  return {
    violations,
    figures: {
      params: p,
      previousRelease: {
        version: previous.version,
        commit: previous.commit,
        builtNow: previous.built,
        buildMs: previous.buildMs,
      },
      durationMs: elapsed(),
      steps: log,
      conductorsStarted: tally(fleet.members.map((m) => releaseOf.get(m.id)!)),
      requests: sent.length,
      requestShapes: tally(sent.map((s) => s.shape)),
      cancelled: cancelledIds.size,
      oldReleaseCoalescedCancels,
      results: {
        final: tally(
          [...finals.values()].map((r: Result) =>
            r.status === 'failed' ? `failed:${String(r.reason)}` : r.status,
          ),
        ),
      },
      answeredBy,
      jobs: jobs.map((j) => j.jobId),
      lost: lost.length,
      corrupt,
      realOverlaps: sampler.overlaps.filter((x) => x.kind === 'real').length,
      retriesByReason: tally(retries.map((l) => String(l.reason))),
      deadLettered: deadLettered.length,
      leftoversWhenIdle: { locks: lockLeft.length, tmp: tmpLeft.length },
      pieceLists,
      lastRound: sweep,
      lockTakeovers: fleet.total('lockTakeovers'),
    },
  };
}
