import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { ChildProcessPool } from '../support/child-processes';
import { type Result, ResultsTap, answeredLines, publishConfirmed } from '../support/conductor-harness';
import { sha256OfFile } from '../support/image-store-fixtures';
import { TestCell } from '../support/test-cell';
import { type CampaignRun, type Cleanups, bySize, tally, adminToken } from './campaign-kit';
import { sleep } from '../support/async';
import {
  FinalPathsWatcher,
  TmpOverlapSampler,
  lockLeftovers,
  heldLockEntries,
} from '../support/cell-observers';
import { ConductorFleet } from './conductor-fleet';

export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const KiB = 1024;
const MiB = 1024 * KiB;
const STALE_MS = 2_000;

export const CLOCK_SKEW_SIZES = {
  ci: { nodes: 6, images: 6, requestsPerPair: 2, bigBytes: 24 * MiB, pauses: 1 },
  large: { nodes: 10, images: 16, requestsPerPair: 3, bigBytes: 64 * MiB, pauses: 6 },
};

/**
 * Campaign 4, at the conductor level (the lock-level argument is test/locking-clock-skew.e2e-spec.ts):
 * conductors whose wall clocks are 3 hours ahead and 3 hours behind (libfaketime; their monotonic clocks
 * are true) copy beside one with a true clock, on the same images and destinations, and the skewed ones
 * are paused past the stale time now and then. Staleness is observed, never computed from clocks, so:
 * no two writers of one image at once, every request completes, every image verifies, nothing is left.
 */
export async function runClockSkew(
  run: CampaignRun,
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
): Promise<{ violations: string[]; figures: Record<string, unknown> }> {
  if (!existsSync(LIBFAKETIME))
    throw new Error(`${LIBFAKETIME} is missing: apt-get install -y faketime (.ci/run does it)`);
  const p = bySize(run, CLOCK_SKEW_SIZES);
  const rng = run.rng.fork('clock');
  const violations: string[] = [];
  const started = performance.now();
  const nodes = Array.from({ length: p.nodes }, (_, i) => `node-${i}`);
  const cell = await TestCell.create({ nodes });
  cleanups.add('cell', () => cell.cleanup());
  const seeds = new Map<string, { sha256: string; size: number; node: string }>();
  for (let i = 0; i < p.images; i++) {
    const imageId = `img-${i}.raw`;
    const node = nodes[i % nodes.length]!;
    seeds.set(imageId, {
      ...(await cell.seed(node, imageId, i === 0 ? p.bigBytes : rng.int(256 * KiB, 4 * MiB))),
      node,
    });
  }
  const skews: Record<string, string | undefined> = {
    'clock-true': undefined,
    'clock-ahead': '+3h',
    'clock-behind': '-3h',
  };
  const fleet = new ConductorFleet(
    pool,
    (id) => ({
      ...cell.conductorEnv({ COPY_CONCURRENCY: '3', MAX_ATTEMPTS: '10' }),
      ...(skews[id]
        ? { LD_PRELOAD: LIBFAKETIME, FAKETIME: skews[id]!, FAKETIME_DONT_FAKE_MONOTONIC: '1' }
        : {}),
    }),
    adminToken(run),
    bySize(run, { ci: 180_000, large: 1_200_000 }),
  );
  await Promise.all(Object.keys(skews).map((id) => fleet.start(id)));
  fleet.startSampling(1_000);
  cleanups.add('status sampler', () => fleet.stopSampling());
  const tap = await ResultsTap.open(cell.topology);
  cleanups.add('results tap', () => tap.close());
  const watcher = new FinalPathsWatcher();
  cleanups.add('final-path watcher', () => watcher.stop());
  const sampler = new TmpOverlapSampler(cell.root, nodes, (id) => fleet.resumedRecently(id, 2_500));
  cleanups.add('overlap sampler', () => sampler.stop());

  const requests: Array<{ body: Record<string, unknown>; messageId: string }> = [];
  for (const [imageId, seed] of seeds)
    for (const destination of nodes.filter((n) => n !== seed.node)) {
      watcher.watch(cell.store.entries.imagePath(destination, imageId), seed);
      for (let k = 0; k < p.requestsPerPair; k++) {
        const requestId = `skew-${requests.length}`;
        requests.push({
          body: {
            v: 1,
            requestId,
            imageId,
            destination,
            ...(rng.chance(0.5) ? { sha256: seed.sha256 } : {}),
          },
          messageId: requestId,
        });
      }
    }
  rng.shuffle(requests);
  // Half now, half after the skewed conductors were paused past the stale time while holding locks.
  await publishConfirmed(cell.topology.requestQueue.name, requests.slice(0, requests.length / 2));
  const pauses: Array<{ conductor: string; holding: boolean }> = [];
  for (let i = 0; i < p.pauses; i++) {
    const victimId = rng.pick(['clock-ahead', 'clock-behind']);
    const victim = fleet.members.find((m) => m.id === victimId)!;
    for (let tries = 0; tries < 100; tries++) {
      if ((await cell.tmpLeftovers()).length > 0) break;
      await sleep(10);
    }
    fleet.pause(victim);
    pauses.push({
      conductor: victim.id,
      holding: (await lockLeftovers(cell.root, STALE_MS)).some((l) => l.conductorId === victim.id),
    });
    await sleep(STALE_MS + rng.int(500, 1_500));
    fleet.resume(victim);
    await sleep(rng.int(200, 1_000));
  }
  await publishConfirmed(cell.topology.requestQueue.name, requests.slice(requests.length / 2));

  const ids = requests.map((r) => r.messageId);
  let finals = new Map<string, Result>();
  try {
    finals = await tap.waitForFinal(ids, bySize(run, { ci: 90_000, large: 600_000 }));
  } catch (error) {
    violations.push(String(error));
  }
  await fleet.waitIdle(60_000).catch((error: unknown) => violations.push(String(error)));
  await Promise.all(fleet.live().map((m) => fleet.sampleOne(m).catch(() => undefined)));
  await fleet.stopSampling();
  await sampler.stop();
  await watcher.stop();

  for (const r of finals.values())
    if (r.status === 'failed')
      violations.push(`request ${r.requestId} failed: ${String(r.reason)} ${String(r.detail)}`);
  for (const [imageId, seed] of seeds)
    for (const destination of nodes.filter((n) => n !== seed.node)) {
      const sha256 = await sha256OfFile(cell.store.entries.imagePath(destination, imageId)).catch(
        () => 'missing',
      );
      if (sha256 !== seed.sha256) violations.push(`${imageId} on ${destination}: ${sha256}`);
    }
  for (const o of sampler.overlaps.filter((x) => x.kind === 'real'))
    violations.push(`overlap: ${JSON.stringify(o)}`);
  for (const problem of watcher.problems) violations.push(`final-path reader: ${problem}`);
  for (const l of await heldLockEntries(cell.root)) violations.push(`lock left: ${l}`);
  for (const t of await cell.tmpLeftovers()) violations.push(`partial file left: ${t}`);
  const conductors = fleet.conductors();
  for (const m of fleet.members)
    if (m.conductor.child.process.exitCode !== null) violations.push(`${m.id} exited`);
  const lines = answeredLines(conductors);
  return {
    violations,
    figures: {
      params: p,
      durationMs: Math.round(performance.now() - started),
      requests: requests.length,
      results: tally([...finals.values()].map((r) => r.status)),
      answeredBy: tally(lines.map((l) => String(l.conductorId))),
      copiesBy: tally(
        lines
          .filter((l) => l.status === 'completed' && l.coalesced === false)
          .map((l) => String(l.conductorId)),
      ),
      pauses,
      retriesByReason: tally(
        conductors
          .flatMap((c) => c.logs().filter((l) => l.msg === 'copy failed, retry scheduled'))
          .map((l) => String(l.reason)),
      ),
      lockTakeovers: fleet.total('lockTakeovers'),
      locksLost: fleet.total('locksLost'),
      overlaps: {
        real: sampler.overlaps.filter((x) => x.kind === 'real').length,
        residual: sampler.overlaps.filter((x) => x.kind === 'residual').length,
      },
      finalPathReader: { looks: watcher.looks, hashed: watcher.hashed },
    },
  };
}
