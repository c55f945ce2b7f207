/*
 * Cell scale (issue 25): what a cell of thousands of nodes with lock history costs the shared file system
 * and the requesters. Cells of 10 (the baseline of the same run), 1,000 and 5,000 registered nodes × 50
 * images, each image's lock used once (bench/support/scale-cell.ts); with 1 and with 3 conductors:
 *   - file-system calls per minute per conductor at idle and under a steady request rate (strace, see
 *     bench/support/syscall-count.ts), once each conductor has finished its first background rounds;
 *   - the leftover sweep's and the cleaner's last round time (GET /status), GET /status and GET /locks
 *     latency and status code;
 *   - request latency p50/p99: copies without a named source (the conductor finds a holder), and no-ops,
 *     timed without strace (a separate traced pass counts the calls under requests).
 * Over a network mount: `npm run bench:cell-scale:sshfs` (as root) runs the same also over a loopback sshfs
 * mount with caches off (test/support/run-cell-scale-sshfs.ts makes the mounts and calls runCellScale).
 * Every figure also as a ratio against the 10-node cell of the same run.
 * Run: npm run bench:cell-scale [-- --nodes 10,1000,5000 --conductors 1,3 --idle-s 60 --requests 100 --sshfs]
 *      --quick: 10,200,1000 nodes, 20 s idle, 20 requests. --cleaner off: without the cache cleaner (its
 *      default), which otherwise runs every 60 s here.   (writes bench/results/cell-scale.json)
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { percentile, round } from './bench-stats';
import { BenchCell, BenchConductor, BenchRequester, writeResults } from './support/bench-cell';
import { flagValue, numberFlag } from './support/cli-args';
import { fillScaleCell, historyImageId, scaleNodeNames } from './support/scale-cell';
import { SyscallCounter } from './support/syscall-count';

const quick = process.argv.includes('--quick');
const SIZES = (flagValue('--nodes') ?? (quick ? '10,200,1000' : '10,1000,5000')).split(',').map(Number);
const CONDUCTORS = (flagValue('--conductors') ?? '1,3').split(',').map(Number);
const IDLE_S = numberFlag('--idle-s') ?? (quick ? 20 : 60);
const REQUESTS = numberFlag('--requests') ?? (quick ? 20 : 100);
/** The pass that counts the file-system calls under requests (strace attached): its latencies are not used. */
const TRACED_REQUESTS = Math.max(10, Math.round(REQUESTS / 4));
const IMAGES = numberFlag('--images') ?? 50;
const ROUND_MS = 60_000;
/** --cleaner off: the conductors' defaults (no cleaner), for the idle floor of the sweep alone. */
const CLEANER = flagValue('--cleaner') !== 'off';
/** --history none: no lock key folders (the state once the sweep retired them; retiring 250,000 takes long). */
const HISTORY = flagValue('--history') !== 'none';
const KiB = 1024;

interface Figures {
  nodes: number;
  conductors: number;
  mount: 'local' | 'sshfs';
  /** The longest sweep round before the first quiet one (with history: the round that retired it). */
  firstSweepMs: number;
  keysRetired: number;
  idleOpsPerMinute: number[];
  idleTopCalls: Record<string, number>;
  loadOpsPerMinute: number[];
  sweepRoundMs: number[];
  cleanerRoundMs: number[];
  holderScanMs: number[];
  /** The holder index's last scan under requests: its file-system calls and the folders it listed. */
  holderScanFsOps: number[];
  holderScanListed: number[];
  /** The sweep's last round's file-system calls, counted by the conductor through its seams. */
  sweepRoundFsOps: number[];
  statusMs: { p50: number; max: number };
  locks: { p50: number; max: number; codes: number[]; entries: number; complete: boolean | null };
  copyMs: Latency;
  noopMs: Latency;
}

interface Latency {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

function latency(ms: number[]): Latency {
  return {
    p50: round(percentile(ms, 50)),
    p90: round(percentile(ms, 90)),
    p99: round(percentile(ms, 99)),
    max: round(Math.max(...ms)),
  };
}

/** What the bench reads of GET /status and GET /locks. */
interface RoundView {
  durationMs: number;
  fsOps?: number;
  keysRetired?: number;
  keysCollected?: number;
  endedAt?: string;
}
interface StatusBody {
  leftovers?: { rounds?: number; lastRound?: RoundView | null; totals?: { keysRetired?: number } };
  cacheCleaner?: { lastRound?: RoundView | null };
  holderIndex?: { lastScan?: { durationMs: number; fsOps?: number; listed?: number } | null } | null;
}
interface LocksBody {
  entries?: unknown[];
  complete?: boolean;
}

async function getJson<T>(
  port: number,
  route: string,
): Promise<{ ms: number; code: number; body: T | null }> {
  const started = performance.now();
  const response = await fetch(`http://127.0.0.1:${port}${route}`);
  const text = await response.text();
  const ms = performance.now() - started;
  let body: T | null = null;
  try {
    body = JSON.parse(text) as T;
  } catch {
    body = null;
  }
  return { ms, code: response.status, body };
}

const status = async (port: number): Promise<StatusBody> =>
  (await getJson<StatusBody>(port, '/status')).body ?? {};

/** Mounts a cell's root somewhere else (a network file system), for the same figures over it. */
export interface CellMounter {
  name: 'sshfs';
  mount(root: string): Promise<{ mountPoint: string; unmount(): Promise<void> }>;
}

/**
 * Waits until a quiet sweep round (nothing collected, no key folder retired) and a cleaner round have ended
 * in some conductor; returns the longest sweep round seen meanwhile (the one that retired the history).
 */
async function firstRoundsDone(
  ports: number[],
  timeoutMs: number,
): Promise<{ firstSweepMs: number; retired: number }> {
  const deadline = Date.now() + timeoutMs;
  let firstSweepMs = 0;
  let retired = 0;
  for (;;) {
    const statuses = await Promise.all(ports.map(status));
    for (const s of statuses) {
      firstSweepMs = Math.max(firstSweepMs, s.leftovers?.lastRound?.durationMs ?? 0);
      retired = Math.max(retired, s.leftovers?.totals?.keysRetired ?? 0);
    }
    // A first round only watches the key folders, the second retires the idle ones: wait for a quiet
    // round after those (the newest round in the cell, whoever ran it).
    const rounds = statuses.reduce((n, s) => n + (s.leftovers?.rounds ?? 0), 0);
    const newest = statuses
      .flatMap((s) => (s.leftovers?.lastRound ? [s.leftovers.lastRound] : []))
      .sort((a, b) => String(b.endedAt).localeCompare(String(a.endedAt)))[0];
    const quiet =
      rounds >= (HISTORY ? 3 : 1) && newest !== undefined && !newest.keysRetired && !newest.keysCollected;
    if (quiet && (!CLEANER || statuses.some((s) => s.cacheCleaner?.lastRound)))
      return { firstSweepMs, retired };
    if (Date.now() > deadline) throw new Error(`first background rounds not done within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function countOps(pids: number[], during: () => Promise<unknown>) {
  const counters = await Promise.all(pids.map((pid) => SyscallCounter.attach(pid)));
  const started = performance.now();
  await during();
  const minutes = (performance.now() - started) / 60_000;
  const counts = await Promise.all(counters.map((c) => c.stop()));
  return { perMinute: counts.map((c) => Math.round(c.total / minutes)), counts };
}

async function measure(
  cell: BenchCell,
  root: string,
  nodes: string[],
  conductors: number,
  mount: Figures['mount'],
) {
  const started = Array.from({ length: conductors }, (_, i) =>
    BenchConductor.start(
      cell.conductorEnv({
        CACHE_ROOT: root,
        CONDUCTOR_ID: `scale-${i}`,
        CLEANER_ENABLED: String(CLEANER),
        CLEANER_INTERVAL_MS: String(ROUND_MS),
        LEFTOVER_SWEEP_MS: String(ROUND_MS),
        CACHE_ROOT_CHECK: 'warn',
      }),
    ),
  );
  try {
    await Promise.all(started.map((c) => c.ready(300_000)));
    const ports = started.map((c) => c.adminPort());
    const first = await firstRoundsDone(ports, 30 * 60_000);
    const idle = await countOps(
      started.map((c) => c.pid),
      () => new Promise((r) => setTimeout(r, IDLE_S * 1000)),
    );
    const statuses = await Promise.all(ports.map(status));
    const statusMs: number[] = [];
    for (let i = 0; i < 20; i++) statusMs.push((await getJson(ports[0]!, '/status')).ms);
    const locksMs: number[] = [];
    const codes: number[] = [];
    let lastLocks: LocksBody | null = null;
    for (let i = 0; i < 5; i++) {
      const r = await getJson<LocksBody>(ports[0]!, '/locks');
      locksMs.push(r.ms);
      codes.push(r.code);
      lastLocks = r.body;
      await new Promise((res) => setTimeout(res, 600)); // past the answer cache
    }
    // Steady requests, one at a time: copies without a source of an image one node holds, and no-ops.
    // Timed without strace (it slows every system call, the background scans' too, so it would inflate the
    // very contention the latency shows); the calls under that load are counted in a second, traced pass.
    const client = await BenchRequester.open();
    const requests = async (count: number, from: number) => {
      const copyMs: number[] = [];
      const noopMs: number[] = [];
      for (let r = from; r < from + count; r++) {
        const destination = nodes[1 + ((r * 7919) % (nodes.length - 1))]!;
        await fsp.rm(cell.store.entries.imagePath(destination, 'req'), { force: true });
        await fsp.rm(cell.store.entries.metaPath(destination, 'req'), { force: true });
        let t = performance.now();
        const copy = await client.finalReply(
          client.send(cell.topology.requestQueue.name, {
            v: 1,
            requestId: `c${r}`,
            imageId: 'req',
            destination,
          }),
          120_000,
        );
        if (copy.status === 'failed') throw new Error(`copy failed: ${JSON.stringify(copy)}`);
        copyMs.push(performance.now() - t);
        t = performance.now();
        await client.finalReply(
          client.send(cell.topology.requestQueue.name, {
            v: 1,
            requestId: `n${r}`,
            imageId: historyImageId(r % IMAGES),
            destination,
          }),
          120_000,
        );
        noopMs.push(performance.now() - t);
      }
      return { copyMs, noopMs };
    };
    const { copyMs, noopMs } = await requests(REQUESTS, 0);
    const load = await countOps(
      started.map((c) => c.pid),
      () => requests(TRACED_REQUESTS, REQUESTS),
    );
    await client.close();
    const after = await Promise.all(ports.map(status));
    const figures: Figures = {
      nodes: nodes.length,
      conductors,
      mount,
      firstSweepMs: first.firstSweepMs,
      keysRetired: first.retired,
      idleOpsPerMinute: idle.perMinute,
      idleTopCalls: idle.counts[0]!.bySyscall,
      loadOpsPerMinute: load.perMinute,
      sweepRoundMs: statuses.flatMap((s) => s.leftovers?.lastRound?.durationMs ?? []),
      cleanerRoundMs: statuses.flatMap((s) => s.cacheCleaner?.lastRound?.durationMs ?? []),
      holderScanMs: after.map((s) => s.holderIndex?.lastScan?.durationMs ?? NaN),
      holderScanFsOps: after.map((s) => s.holderIndex?.lastScan?.fsOps ?? NaN),
      holderScanListed: after.map((s) => s.holderIndex?.lastScan?.listed ?? NaN),
      sweepRoundFsOps: statuses.flatMap((s) => s.leftovers?.lastRound?.fsOps ?? []),
      statusMs: { p50: round(percentile(statusMs, 50)), max: round(Math.max(...statusMs)) },
      locks: {
        p50: round(percentile(locksMs, 50)),
        max: round(Math.max(...locksMs)),
        codes,
        entries: Array.isArray(lastLocks?.entries) ? lastLocks.entries.length : 0,
        complete: typeof lastLocks?.complete === 'boolean' ? lastLocks.complete : null,
      },
      copyMs: latency(copyMs),
      noopMs: latency(noopMs),
    };
    console.log(JSON.stringify(figures));
    return figures;
  } finally {
    await Promise.all(started.map((c) => c.kill()));
  }
}

async function runSize(count: number, mounter: CellMounter | undefined): Promise<Figures[]> {
  const nodes = scaleNodeNames(count);
  const buildStarted = performance.now();
  const cell = await BenchCell.create(nodes);
  const results: Figures[] = [];
  try {
    await fillScaleCell(cell, { nodes, imagesPerNode: IMAGES, imageBytes: 4 * KiB, lockHistory: HISTORY });
    await cell.seed(nodes[0]!, 'req', 64 * KiB);
    console.log(`[cell-scale] ${count} nodes built in ${Math.round(performance.now() - buildStarted)} ms`);
    for (const conductors of CONDUCTORS)
      results.push(await measure(cell, cell.root, nodes, conductors, 'local'));
    if (mounter) {
      const mounted = await mounter.mount(cell.root);
      try {
        for (const conductors of CONDUCTORS)
          results.push(await measure(cell, mounted.mountPoint, nodes, conductors, mounter.name));
      } finally {
        await mounted.unmount();
      }
    }
  } finally {
    await cell.cleanup();
  }
  return results;
}

function ratios(all: Figures[]) {
  return all.map((f) => {
    const base = all.find(
      (b) => b.nodes === SIZES[0] && b.conductors === f.conductors && b.mount === f.mount,
    )!;
    const med = (v: number[]) => percentile(v, 50);
    const r = (a: number, b: number) => round(a / b);
    return {
      nodes: f.nodes,
      conductors: f.conductors,
      mount: f.mount,
      idleOps: r(med(f.idleOpsPerMinute), med(base.idleOpsPerMinute)),
      sweepRound: r(med(f.sweepRoundMs), med(base.sweepRoundMs)),
      cleanerRound: r(med(f.cleanerRoundMs), med(base.cleanerRoundMs)),
      locks: r(f.locks.p50, base.locks.p50),
      copyP50: r(f.copyMs.p50, base.copyMs.p50),
      copyP90: r(f.copyMs.p90, base.copyMs.p90),
      copyP99: r(f.copyMs.p99, base.copyMs.p99),
      noopP50: r(f.noopMs.p50, base.noopMs.p50),
      noopP99: r(f.noopMs.p99, base.noopMs.p99),
    };
  });
}

/** The whole bench; with `mounter`, every cell also over that mount. */
export async function runCellScale(mounter?: CellMounter): Promise<void> {
  const all: Figures[] = [];
  for (const size of SIZES) all.push(...(await runSize(size, mounter)));
  const report = {
    sizes: SIZES,
    conductors: CONDUCTORS,
    idleSeconds: IDLE_S,
    requests: REQUESTS,
    figures: all,
    ratios: ratios(all),
  };
  console.log(JSON.stringify(report.ratios, null, 1));
  console.log(`results: ${await writeResults(path.basename(__filename, '.js'), report)}`);
}

if (require.main === module)
  runCellScale().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
