import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ChildProcessPool } from '../support/child-processes';
import {
  type Result,
  ResultsTap,
  answeredLines,
  copiesPerDestination,
  errorLines,
  publishConfirmed,
} from '../support/conductor-harness';
import { closeConnectionsNamed, rabbitmqApp, waitForBroker } from '../support/rabbitmq';
import { TestCell } from '../support/test-cell';
import { type CampaignRun, type Cleanups, bySize, tally, adminToken } from './campaign-kit';
import { sleep } from '../support/async';
import { FinalPathsWatcher, heldLockEntries, verifyCopies } from '../support/cell-observers';
import { ConductorFleet, type FleetMember } from './conductor-fleet';

const MiB = 1024 * 1024;

export interface BrokerFaultParams {
  nodes: number;
  images: number;
  imageBytes: [number, number];
  conductors: number;
  /** Broker outages (stop_app ... start_app) and server-side closes of conductor connections. */
  outages: number;
  outageMs: [number, number];
  connectionCloses: number;
  gapMs: [number, number];
  /**
   * Requests published per wave (one wave before each fault, one after the last): this many for pairs not
   * requested before (real copies, while there are any), plus a quarter as many repeats of earlier pairs.
   * Each fault strikes once a copy of its wave is under way (a partial file is growing).
   */
  requestsPerWave: number;
  settleMs: number;
}

export const BROKER_FAULT_SIZES = {
  ci: {
    nodes: 8,
    images: 8,
    imageBytes: [1 * MiB, 16 * MiB],
    conductors: 2,
    outages: 2,
    outageMs: [2_000, 4_000],
    connectionCloses: 4,
    gapMs: [0, 400],
    requestsPerWave: 8,
    settleMs: 90_000,
  },
  large: {
    nodes: 16,
    images: 48,
    imageBytes: [1 * MiB, 16 * MiB],
    conductors: 3,
    outages: 10,
    outageMs: [1_000, 8_000],
    connectionCloses: 30,
    gapMs: [0, 1_500],
    requestsPerWave: 16,
    settleMs: 300_000,
  },
} satisfies Record<string, BrokerFaultParams>;

export function brokerFaultTestTimeoutMs(run: CampaignRun): number {
  const p = bySize(run, BROKER_FAULT_SIZES);
  return (
    p.outages * (p.outageMs[1] + 45_000) + p.connectionCloses * (p.gapMs[1] + 15_000) + p.settleMs + 60_000
  );
}

/** Lock timings under which a freeze of a few seconds (see `frozen` below) costs no lock. */
const FREEZE_SAFE_LOCK_TIMINGS = {
  LOCK_STALE_MS: '20000',
  LOCK_UPDATE_MS: '2000',
  LOCK_SAFETY_MARGIN_MS: '5000',
};

let brokerStopped = false;

/** Brings RabbitMQ back if a campaign stopped it (idempotent): call it first in every clean-up. */
export async function restoreBroker(): Promise<void> {
  if (!brokerStopped) return;
  await rabbitmqApp('start_app');
  brokerStopped = false;
  await waitForBroker();
}

interface OutageRecord {
  atMs: number;
  outageMs: number;
  /** Per conductor: did GET /status say 'disconnected' during the outage, and how long it took to reconnect after start_app. */
  seenDisconnected: Record<string, boolean>;
  readyWhileDown: Record<string, number>;
  reconnectedAfterMs: Record<string, number | null>;
}

/**
 * Campaign 2: RabbitMQ stopped and started (`rabbitmqctl stop_app` / `start_app`) and the conductors'
 * connections closed from the broker side (`rabbitmqctl close_connection`), at seeded moments, while copy
 * requests keep coming. Nothing may be lost or corrupted; each conductor must say 'disconnected' on
 * GET /status while the broker is down (and not be ready), and reconnect by itself.
 */
export async function runBrokerFaults(
  run: CampaignRun,
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
): Promise<{ violations: string[]; figures: Record<string, unknown> }> {
  const p: BrokerFaultParams = bySize(run, BROKER_FAULT_SIZES);
  const rng = run.rng;
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  const violations: string[] = [];

  const nodes = Array.from({ length: p.nodes }, (_, i) => `node-${i}`);
  const cell = await TestCell.create({ nodes });
  cleanups.add('cell', () => cell.cleanup());
  const planRng = rng.fork('plan');
  const seeds = new Map<string, { sha256: string; size: number; node: string }>();
  for (let i = 0; i < p.images; i++) {
    const imageId = `img-${i}.raw`;
    const node = nodes[i % nodes.length]!;
    seeds.set(imageId, {
      ...(await cell.seed(node, imageId, planRng.int(p.imageBytes[0], p.imageBytes[1]))),
      node,
    });
  }
  const pairs: Array<{ imageId: string; destination: string }> = [];
  for (const [imageId, seed] of seeds)
    for (const destination of nodes.filter((n) => n !== seed.node)) pairs.push({ imageId, destination });
  planRng.shuffle(pairs);

  const tap = await ResultsTap.open(cell.topology);
  cleanups.add('results tap', () => tap.close());
  const watcher = new FinalPathsWatcher();
  cleanups.add('final-path watcher', () => watcher.stop());
  for (const pair of pairs)
    watcher.watch(cell.store.entries.imagePath(pair.destination, pair.imageId), seeds.get(pair.imageId)!);

  const fleet = new ConductorFleet(
    pool,
    () => cell.conductorEnv({ COPY_CONCURRENCY: '4', MAX_ATTEMPTS: '10', ...FREEZE_SAFE_LOCK_TIMINGS }),
    adminToken(run),
    bySize(run, { ci: 300_000, large: 3_600_000 }),
  );
  await Promise.all(
    Array.from({ length: p.conductors }, (_, i) => fleet.start(`broker-${String.fromCharCode(97 + i)}`)),
  );

  // Waves of requests (no reply_to: results are read from the events exchange through the tap, whose
  // quorum queue keeps them across outages). A wave that fails to publish is published again until the
  // broker confirms all of it: duplicates are allowed, losses are not.
  const ids: string[] = [];
  const requested = new Set<string>();
  let pairCursor = 0;
  let republished = 0;
  const publishWave = async (): Promise<void> => {
    const repeats = Math.ceil(p.requestsPerWave / 4);
    const wavePairs = [
      ...Array.from({ length: p.requestsPerWave }, () => pairs[pairCursor++ % pairs.length]!),
      ...Array.from(
        { length: repeats },
        () => pairs[planRng.int(0, Math.max(0, Math.min(pairCursor, pairs.length) - 1))]!,
      ),
    ];
    const wave = wavePairs.map((pair) => {
      const seed = seeds.get(pair.imageId)!;
      const requestId = `bf-${ids.length}`;
      ids.push(requestId);
      requested.add(`${pair.imageId}|${pair.destination}`);
      const body: Record<string, unknown> = { v: 1, requestId, ...pair };
      if (planRng.chance(0.5)) Object.assign(body, { sha256: seed.sha256, size: seed.size });
      return { body, messageId: requestId };
    });
    for (let attempt = 0; ; attempt++) {
      try {
        await publishConfirmed(cell.topology.requestQueue.name, wave);
        return;
      } catch {
        republished++;
        if (attempt > 120) throw new Error('could not publish a wave within a minute');
        await sleep(500);
      }
    }
  };

  const faultRng = rng.fork('faults');
  const kinds = faultRng.shuffle([
    ...Array<'outage'>(p.outages).fill('outage'),
    ...Array<'close'>(p.connectionCloses).fill('close'),
  ]);
  const outages: OutageRecord[] = [];
  const closes: Array<{
    atMs: number;
    target: string;
    connections: number;
    reconnectedAfterMs: number | null;
  }> = [];
  let struckMidCopy = 0;
  // rabbitmqctl takes a second or more to start: the conductors are frozen (SIGSTOP, far below the lock
  // stale time of this campaign) from the moment a copy is seen under way until the broker has acted, so
  // that the fault lands mid-copy, with answers and acks pending (as test/conductor-connection-loss does).
  const frozen = async <T>(act: () => Promise<T>): Promise<T> => {
    const members = fleet.live();
    for (const m of members) fleet.pause(m);
    try {
      return await act();
    } finally {
      for (const m of members) fleet.resume(m, false);
    }
  };
  for (const kind of kinds) {
    await sleep(faultRng.int(p.gapMs[0], p.gapMs[1]));
    await publishWave();
    if (await partialCopyUnderWay(cell.root, nodes, 3_000)) struckMidCopy++;
    if (kind === 'outage')
      outages.push(
        await brokerOutage(fleet, frozen, faultRng.int(p.outageMs[0], p.outageMs[1]), elapsed(), violations),
      );
    else {
      const target = faultRng.pick(fleet.live());
      const before = await fleet.sampleOne(target);
      const atMs = elapsed();
      const connections = await frozen(() =>
        closeConnectionsNamed(`conductor-${target.id}`, 'campaign: connection closed by the broker'),
      ).catch((error: Error) => {
        violations.push(`close_connection of ${target.id}: ${error.message}`);
        return 0;
      });
      const reconnectedAfterMs = await waitReconnected(target, before?.reconnects ?? 0, 30_000);
      if (reconnectedAfterMs === null)
        violations.push(`${target.id} did not reconnect within 30 s after its connection was closed`);
      closes.push({ atMs, target: target.id, connections, reconnectedAfterMs });
    }
  }
  await publishWave();

  let finals = new Map<string, Result>();
  try {
    finals = await tap.waitForFinal(ids, p.settleMs);
  } catch (error) {
    violations.push(String(error));
    for (const id of ids) if (tap.final(id)) finals.set(id, tap.final(id)!);
  }
  await fleet.waitIdle(60_000).catch((error: unknown) => violations.push(String(error)));
  await watcher.stop();

  const lost = ids.filter((id) => !finals.has(id));
  const failed = [...finals.values()].filter((r) => r.status === 'failed');
  for (const r of failed.slice(0, 20))
    violations.push(`request ${r.requestId} failed for good: ${String(r.reason)} ${String(r.detail)}`);
  const corrupt = await verifyCopies(cell.store, requested, seeds, violations);
  for (const problem of watcher.problems.slice(0, 20)) violations.push(`final-path reader: ${problem}`);
  // Nobody was killed here: nothing may be left at all.
  for (const l of await heldLockEntries(cell.root)) violations.push(`lock left: ${l}`);
  for (const t of await cell.tmpLeftovers()) violations.push(`partial file left: ${t}`);
  for (const m of fleet.members)
    if (m.conductor.child.process.exitCode !== null || m.conductor.child.process.signalCode !== null)
      violations.push(`conductor ${m.id} exited`);
  const conductors = fleet.conductors();
  for (const l of conductors
    .flatMap((c) => c.logs().filter((x) => x.msg === 'unexpected error in a copy'))
    .slice(0, 5))
    violations.push(`INTERNAL error: ${JSON.stringify(l)}`);

  const lines = answeredLines(conductors);
  const copies = copiesPerDestination(conductors);
  return {
    violations,
    figures: {
      params: p,
      durationMs: elapsed(),
      requests: ids.length,
      pairs: requested.size,
      wavesRepublished: republished,
      faults: { outage: outages.length, connectionClose: closes.length },
      struckWhileACopyWasUnderWay: struckMidCopy,
      outages,
      closes,
      results: {
        final: tally([...finals.values()].map((r) => r.status)),
        resultMessages: tap.results.length,
        duplicateFinals: tap.results.filter((r) => r.retryable !== true).length - finals.size,
      },
      lost: lost.length,
      failed: failed.length,
      corrupt,
      answered: {
        lines: lines.length,
        redelivered: lines.filter((l) => l.redelivered === true).length,
        laterAttempts: lines.filter((l) => Number(l.attempt) > 1).length,
      },
      handedBack: conductors.reduce(
        (n, c) => n + c.logs().filter((l) => l.msg === 'could not answer a request; handing it back').length,
        0,
      ),
      reconnects: Object.fromEntries(
        conductors.map((c, i) => [
          fleet.members[i]!.id,
          c.logs().filter((l) => l.msg === 'connected to RabbitMQ' && Number(l.reconnects) >= 1).length,
        ]),
      ),
      copiesLogged: [...copies.values()].reduce((a, b) => a + b, 0),
      finalPathReader: { looks: watcher.looks, hashed: watcher.hashed, problems: watcher.problems.length },
      errorLogLines: errorLines(conductors).length,
    },
  };
}

/** One stop_app ... start_app, watching every conductor's GET /status and readiness through it. */
async function brokerOutage(
  fleet: ConductorFleet,
  frozen: (act: () => Promise<void>) => Promise<void>,
  outageMs: number,
  atMs: number,
  violations: string[],
): Promise<OutageRecord> {
  const members = fleet.live();
  const seenDisconnected: Record<string, boolean> = Object.fromEntries(members.map((m) => [m.id, false]));
  const readyWhileDown: Record<string, number> = Object.fromEntries(members.map((m) => [m.id, 0]));
  const reconnectedAfterMs: Record<string, number | null> = {};
  brokerStopped = true;
  try {
    await frozen(() => rabbitmqApp('stop_app'));
    const downUntil = performance.now() + outageMs;
    while (performance.now() < downUntil) {
      await Promise.all(
        members.map(async (m) => {
          const sample = await fleet.sampleOne(m).catch(() => undefined);
          if (sample?.brokerState === 'disconnected') seenDisconnected[m.id] = true;
          const ready = await m.admin.get('/health/ready').catch(() => undefined);
          if (ready?.status === 200) readyWhileDown[m.id]!++;
        }),
      );
      await sleep(150);
    }
  } finally {
    await restoreBroker();
  }
  const back = performance.now();
  await Promise.all(
    members.map(async (m) => {
      for (;;) {
        const sample = await fleet.sampleOne(m).catch(() => undefined);
        if (sample?.brokerState === 'connected') {
          reconnectedAfterMs[m.id] = Math.round(performance.now() - back);
          return;
        }
        if (performance.now() - back > 40_000) {
          reconnectedAfterMs[m.id] = null;
          return;
        }
        await sleep(100);
      }
    }),
  );
  for (const m of members) {
    if (!seenDisconnected[m.id])
      violations.push(`${m.id}: GET /status never said 'disconnected' during a ${outageMs} ms outage`);
    if (readyWhileDown[m.id]! > 0)
      violations.push(
        `${m.id}: /health/ready answered 200 ${readyWhileDown[m.id]} times while the broker was down`,
      );
    if (reconnectedAfterMs[m.id] === null) violations.push(`${m.id}: not reconnected 40 s after start_app`);
  }
  return { atMs, outageMs, seenDisconnected, readyWhileDown, reconnectedAfterMs };
}

/** Waits (up to `timeoutMs`) until some node's tmp folder holds a partial copy with bytes in it. */
export async function partialCopyUnderWay(
  root: string,
  nodes: string[],
  timeoutMs: number,
): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    for (const node of nodes) {
      const dir = path.join(root, node, 'tmp');
      for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
        if (name.includes('~meta-') || name.includes('~pieces-')) continue;
        const stat = await fsp.stat(path.join(dir, name)).catch(() => undefined);
        if (stat && stat.size > 0) return true;
      }
    }
    await sleep(3);
  }
  return false;
}

/** Time until the conductor reports a higher reconnect count than `before`, and 'connected'; null if it does not. */
export async function waitReconnected(
  member: FleetMember,
  before: number,
  timeoutMs: number,
): Promise<number | null> {
  const started = performance.now();
  for (;;) {
    const answer = await member.admin.get('/status').catch(() => undefined);
    if (answer?.status === 200) {
      const body = answer.json<{ broker: { state: string; reconnects: number } }>();
      if (body.broker.state === 'connected' && body.broker.reconnects > before)
        return Math.round(performance.now() - started);
    }
    if (performance.now() - started > timeoutMs) return null;
    await sleep(100);
  }
}
