/*
 * A separate process that takes locks the way a conductor does, for the multi-process lock tests.
 * Config comes as one JSON argument; reports go to the parent over IPC.
 */
import { promises as fsp, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { type LockFileSystem, NodeLockManager, type LockRequest, nodeLockFileSystem } from '@app/locking';
import { sleep } from './async';

export interface LockWorkerConfig {
  root: string;
  conductorId: string;
  /** retire: take the first key and retire its folder (NodeLockManager.retireKey), `iterations` times. */
  scenario: 'mutex' | 'race-once' | 'hold' | 'pairs' | 'reader' | 'retire';
  requests: LockRequest[];
  iterations: number;
  /** mutex: this many loops of `iterations` at once in this process (waiters queued in-process). */
  loops?: number;
  /** Steps inside each critical section, each preceded by isStillHeld(); random sleeps up to holdMs between. */
  steps: number;
  holdMs: number;
  timeoutMs: number;
  timings: { staleMs: number; updateMs?: number; safetyMarginMs?: number; pollMs?: number };
  /** Critical-section detector folder (see detectOverlaps). */
  csDir?: string;
  /** Control run for the detector: skip locking entirely, so overlaps must show. */
  bypassLocks?: boolean;
  /** race-once: start acquiring when this file appears. */
  goFile?: string;
  /**
   * Stands in for a descheduled process: about a third of this worker's listings of a key folder reach
   * it up to this many ms late, so it acts on a listing older than other processes' claims.
   */
  listingDelayMs?: number;
  /** hold: hold until this file appears (instead of holdMs), so the test decides when the hold ends. */
  releaseFile?: string;
  /** Time every call of the lock file-system seam; the slowest per call kind go into the 'done' report. */
  timeCalls?: boolean;
  /**
   * With timeCalls: every seam call (wall-clock start, kind, path under root, duration) and every report
   * of this worker, written to this file as JSON when the worker is done: where a slow hand-off's time went.
   */
  traceFile?: string;
}

/** One line of a worker's trace (see LockWorkerConfig.traceFile). */
export type TraceEntry =
  { at: number; call: string; target: string; ms: number } | { at: number; report: LockWorkerReport['type'] };

/** Per call kind of the lock file-system seam: how many, and the slowest (ms). */
export type CallTimes = Record<string, { calls: number; maxMs: number; p99Ms: number }>;

export type LockWorkerReport = { at?: number } & (
  | { type: 'ready'; pid: number }
  | {
      type: 'acquired';
      pid: number;
      iteration: number;
      key: string;
      fencingToken: number;
      tookOverStale: boolean;
      waitedMs: number;
    }
  | { type: 'lost'; pid: number; iteration: number; fencingToken: number; reason: string; key?: string }
  /** `releasing`: the wall-clock time release() was called (a hand-off counts from there). */
  | { type: 'released'; pid: number; iteration: number; releasing?: number }
  /** The lock set's signal aborted (the watchdog found a lock lost), reported at once, before release. */
  | { type: 'aborted'; pid: number; iteration: number; reason: string }
  | { type: 'overlap'; pid: number; kind: 'real' | 'residual' | 'leftover'; other: string; mine: string }
  | { type: 'timeout'; pid: number; iteration: number; message: string }
  | {
      type: 'done';
      pid: number;
      acquisitions: number;
      lost: number;
      timeouts: number;
      sections: number;
      calls?: CallTimes;
      retired?: number;
    }
);

const config = JSON.parse(process.argv[2]!) as LockWorkerConfig;
const trace: TraceEntry[] = [];
// Every report carries the child's wall-clock time (one machine, one clock) for ordering checks.
const send = (report: LockWorkerReport) => {
  const at = Date.now();
  if (config.traceFile) {
    trace.push({ at, report: report.type });
    if (report.type === 'done') writeFileSync(config.traceFile, JSON.stringify(trace));
  }
  process.send?.({ ...report, at });
};

async function main(): Promise<void> {
  const manager = new NodeLockManager({
    root: config.root,
    conductorId: config.conductorId,
    timings: config.timings,
    fs: withTimedCalls(config.listingDelayMs ? lateListings(config.listingDelayMs) : undefined),
  });
  const margin = manager.timings.safetyMarginMs;
  send({ type: 'ready', pid: process.pid });
  if (config.goFile) await waitForFile(config.goFile);
  if (config.scenario === 'race-once') return raceOnce(manager, margin);
  if (config.scenario === 'retire') return retireLoop(manager, margin);
  let acquisitions = 0;
  let lost = 0;
  let timeouts = 0;
  let sections = 0;
  const loop = async () => {
    for (let iteration = 0; iteration < config.iterations; iteration++) {
      let set;
      try {
        set = config.bypassLocks
          ? noLock()
          : await manager.acquireAll(config.requests, { timeoutMs: config.timeoutMs });
      } catch (error) {
        timeouts++;
        send({ type: 'timeout', pid: process.pid, iteration, message: (error as Error).message });
        continue;
      }
      acquisitions++;
      const first = set.locks[0]!;
      send({
        type: 'acquired',
        pid: process.pid,
        iteration,
        key: first.key.imageId,
        fencingToken: first.fencingToken,
        tookOverStale: first.tookOverStale,
        waitedMs: first.waitedMs,
      });
      set.signal.addEventListener(
        'abort',
        () => send({ type: 'aborted', pid: process.pid, iteration, reason: String(set.signal.reason) }),
        { once: true },
      );
      let wasLost = false;
      for (let step = 0; step < config.steps; step++) {
        if (config.scenario === 'hold' && config.releaseFile) await waitForFile(config.releaseFile);
        else await sleep(config.scenario === 'hold' ? config.holdMs : Math.random() * config.holdMs);
        const checkStartedAt = Date.now();
        const stillHeld = await isSetHeld(set.locks);
        if (!stillHeld) {
          wasLost = true;
          break;
        }
        if (config.csDir) {
          await criticalStep(config.csDir, first.fencingToken, checkStartedAt, Date.now(), margin);
          sections++;
        }
      }
      if (wasLost || set.signal.aborted) {
        lost++;
        const reason =
          set.signal.reason instanceof Error ? set.signal.reason.message : 'isStillHeld() was false';
        send({ type: 'lost', pid: process.pid, iteration, fencingToken: first.fencingToken, reason });
      }
      const releasing = Date.now();
      await set.release();
      send({ type: 'released', pid: process.pid, iteration, releasing });
      if (config.scenario === 'hold') await sleep(config.holdMs);
    }
  };
  await Promise.all(Array.from({ length: config.loops ?? 1 }, loop));
  send({ type: 'done', pid: process.pid, acquisitions, lost, timeouts, sections, calls: callTimes() });
}

/**
 * Retires the key folder again and again, as the leftover sweep does with an idle key: under the exclusive
 * lock (a critical section like any holder's, checked by the detector), then the rename away. The floor
 * margin is 0: one local disk and one clock, where a new epoch always lies above the old generations.
 */
async function retireLoop(manager: NodeLockManager, margin: number): Promise<void> {
  const key = config.requests[0]!;
  let acquisitions = 0;
  let timeouts = 0;
  let sections = 0;
  let retired = 0;
  for (let iteration = 0; iteration < config.iterations; iteration++) {
    try {
      const outcome = await manager.retireKey(key, {
        timeoutMs: config.timeoutMs,
        floorMarginUs: 0,
        underLock: async (lock) => {
          acquisitions++;
          send({
            type: 'acquired',
            pid: process.pid,
            iteration,
            key: key.imageId,
            fencingToken: lock.fencingToken,
            tookOverStale: lock.tookOverStale,
            waitedMs: lock.waitedMs,
          });
          const checkStartedAt = Date.now();
          if (!(await lock.isStillHeld())) return false;
          if (config.csDir) {
            await criticalStep(config.csDir, lock.fencingToken, checkStartedAt, Date.now(), margin);
            sections++;
          }
          return true;
        },
      });
      if (outcome === 'retired') retired++;
    } catch (error) {
      timeouts++;
      send({ type: 'timeout', pid: process.pid, iteration, message: (error as Error).message });
    }
    send({ type: 'released', pid: process.pid, iteration });
    await sleep(Math.random() * config.holdMs);
  }
  send({ type: 'done', pid: process.pid, acquisitions, lost: 0, timeouts, sections, retired });
}

/** Every key at once, one acquisition each: many processes land on the same (stale) locks together. */
async function raceOnce(manager: NodeLockManager, margin: number): Promise<void> {
  let lost = 0;
  let sections = 0;
  await Promise.all(
    config.requests.map(async (request, iteration) => {
      const lock = await manager.acquire(request, { timeoutMs: config.timeoutMs });
      send({
        type: 'acquired',
        pid: process.pid,
        iteration,
        key: request.imageId,
        fencingToken: lock.fencingToken,
        tookOverStale: lock.tookOverStale,
        waitedMs: lock.waitedMs,
      });
      const csDir = path.join(config.csDir!, request.imageId);
      await fsp.mkdir(csDir, { recursive: true });
      for (let step = 0; step < config.steps; step++) {
        await sleep(Math.random() * config.holdMs);
        const checkStartedAt = Date.now();
        if (!(await lock.isStillHeld())) {
          lost++;
          const reason =
            lock.signal.reason instanceof Error ? lock.signal.reason.message : 'isStillHeld() was false';
          send({
            type: 'lost',
            pid: process.pid,
            iteration,
            fencingToken: lock.fencingToken,
            reason,
            key: request.imageId,
          });
          break;
        }
        await criticalStep(csDir, lock.fencingToken, checkStartedAt, Date.now(), margin);
        sections++;
      }
      await lock.release();
    }),
  );
  send({
    type: 'done',
    pid: process.pid,
    acquisitions: config.requests.length,
    lost,
    timeouts: 0,
    sections,
    calls: callTimes(),
  });
}

function lateListings(maxDelayMs: number): LockFileSystem {
  const locksSegment = `${path.sep}locks${path.sep}`;
  return {
    ...nodeLockFileSystem,
    async readdir(dir) {
      const names = await nodeLockFileSystem.readdir(dir);
      const keyFolder = dir.includes(locksSegment) && !path.basename(dir).startsWith('g-');
      if (keyFolder && Math.random() < 1 / 3) await sleep(Math.random() * maxDelayMs);
      return names;
    },
  };
}

/** The seam as configured, timed when asked (timeCalls): late listings stay late when timed. */
function withTimedCalls(fs: LockFileSystem | undefined): LockFileSystem | undefined {
  return config.timeCalls ? timedCalls(fs ?? nodeLockFileSystem) : fs;
}

const durations = new Map<string, number[]>();
function timedCalls(inner: LockFileSystem): LockFileSystem {
  const timed =
    <A extends unknown[], R>(kind: string, call: (...args: A) => Promise<R>, target?: string) =>
    async (...args: A): Promise<R> => {
      const at = Date.now();
      const started = performance.now();
      try {
        return await call(...args);
      } finally {
        const ms = performance.now() - started;
        const list = durations.get(kind) ?? [];
        durations.set(kind, list);
        list.push(ms);
        if (config.traceFile)
          trace.push({ at, call: kind, target: path.relative(config.root, target ?? String(args[0])), ms });
      }
    };
  return {
    readdir: timed('readdir', (dir: string) => inner.readdir(dir)),
    mkdir: timed('mkdir', (dir: string, options?: { recursive?: boolean }) => inner.mkdir(dir, options)),
    stat: timed('stat', (target: string) => inner.stat(target)),
    rm: timed('rm', (target: string, options: { recursive: true; force: true }) => inner.rm(target, options)),
    rename: timed('rename', (from: string, to: string) => inner.rename(from, to)),
    ...(inner.rmdir && { rmdir: timed('rmdir', (target: string) => inner.rmdir!(target)) }),
    ...(inner.openFolder && {
      openFolder: timed('openFolder', async (dir: string) => {
        const folder = await inner.openFolder!(dir);
        return { sync: timed('fsync', () => folder.sync(), dir), close: () => folder.close() };
      }),
    }),
  };
}

function callTimes(): CallTimes | undefined {
  if (durations.size === 0) return undefined;
  const times: CallTimes = {};
  for (const [kind, list] of durations) {
    const sorted = [...list].sort((a, b) => a - b);
    times[kind] = {
      calls: sorted.length,
      maxMs: Math.round(sorted[sorted.length - 1]!),
      p99Ms: Math.round(sorted[Math.floor(sorted.length * 0.99)]!),
    };
  }
  return times;
}

let fakeToken = 0;
function noLock() {
  const fake = {
    key: config.requests[0]!,
    fencingToken: ++fakeToken,
    tookOverStale: false,
    waitedMs: 0,
    isStillHeld: async () => true,
  };
  return { locks: [fake], signal: new AbortController().signal, release: async () => undefined };
}

async function isSetHeld(locks: { isStillHeld(): Promise<boolean> }[]): Promise<boolean> {
  for (const lock of locks) if (!(await lock.isStillHeld())) return false;
  return true;
}

/*
 * The critical-section detector. Right after a successful isStillHeld() check (at checkedAt), a holder
 * creates a unique entry, lists the others, and removes its entry. The design claims: no other holder's
 * claim can happen within safetyMarginMs after a passed check. So two entries whose checks lie closer
 * than the margin are a real overlap. An entry whose check is older than the margin belongs to a holder
 * that was paused between check and act: the documented residual window (made harmless for images by
 * checksums). Entries of dead processes are leftovers of SIGKILL. Each entry is named
 * `<check passed>-<pid>-<fencing token>-<check started>` (parseCriticalEntry): a test that removes key
 * folders by hand tells an overlap its removal explains from one it does not by when the checks began.
 */
async function criticalStep(
  csDir: string,
  token: number,
  checkStartedAt: number,
  checkedAt: number,
  marginMs: number,
): Promise<void> {
  const mine = `${checkedAt}-${process.pid}-${token}-${checkStartedAt}`;
  const fh = await fsp.open(path.join(csDir, mine), 'wx');
  await fh.close();
  for (const other of await fsp.readdir(csDir)) {
    if (other === mine) continue;
    const [otherCheck, otherPid] = other.split('-').map(Number) as [number, number];
    let kind: 'real' | 'residual' | 'leftover';
    if (!isAlive(otherPid)) {
      kind = 'leftover';
      await fsp.rm(path.join(csDir, other), { force: true });
    } else if (Math.abs(checkedAt - otherCheck) >= marginMs || Date.now() - checkedAt >= marginMs)
      kind = 'residual';
    else kind = 'real';
    send({ type: 'overlap', pid: process.pid, kind, other, mine });
  }
  await fsp.rm(path.join(csDir, mine));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitForFile(file: string): Promise<void> {
  for (;;) {
    try {
      await fsp.access(file);
      return;
    } catch {
      await sleep(1);
    }
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
