/*
 * Lock hand-off across two mounts of one folder (issue 18 item 3) against the same two processes on one
 * local folder, in one run: time from one holder's release to the other process holding the lock, and
 * where a hand-off's time goes (every lock file-system call counted and timed through the lock manager's
 * file-system seam; the heartbeat's proper-lockfile calls are timed around acquire and release).
 * The mounts come from the multi-host bed: `npm run bench:hosts` (as root) makes them and runs this;
 * alone: node dist/bench/mount-handoff.js '{"local":"<dir>","mounts":["<view a>","<view b>"]}'
 */
import { fork } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type LockFileSystem, NodeLockManager, nodeLockFileSystem } from '@app/locking';
import { median, nowMs, percentile, round, spread } from './bench-stats';

interface ChildArgs {
  root: string;
  rounds: number;
  id: string;
  pollMs: number;
}
type Event = { kind: 'acquired' | 'released'; at: number; id: string };
/** Per file-system call: how many, and their total time (ms), over the child's whole run. */
type Calls = Record<string, { n: number; ms: number }>;
interface ChildReport {
  events: Event[];
  calls: Calls;
  acquireMs: number[];
  releaseMs: number[];
}

const HOLD_MS = 3;
const PAUSE_AFTER_RELEASE_MS = 8;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function countingFileSystem(calls: Calls): LockFileSystem {
  const timed =
    <A extends unknown[], R>(name: string, fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      const started = nowMs();
      try {
        return await fn(...args);
      } finally {
        const c = (calls[name] ??= { n: 0, ms: 0 });
        c.n++;
        c.ms += nowMs() - started;
      }
    };
  return {
    readdir: timed('readdir', nodeLockFileSystem.readdir),
    mkdir: timed('mkdir', nodeLockFileSystem.mkdir),
    stat: timed('stat', nodeLockFileSystem.stat),
    rm: timed('rm', nodeLockFileSystem.rm),
    rename: timed('rename', nodeLockFileSystem.rename),
    rmdir: timed('rmdir', nodeLockFileSystem.rmdir!),
    openFolder: timed('openFolder', nodeLockFileSystem.openFolder!),
  };
}

async function child(args: ChildArgs): Promise<void> {
  const report: ChildReport = { events: [], calls: {}, acquireMs: [], releaseMs: [] };
  const manager = new NodeLockManager({
    root: args.root,
    conductorId: args.id,
    // Whole-second mtimes through sshfs: the stale time is seconds, the poll what a conductor uses.
    timings: { staleMs: 10_000, updateMs: 2_000, safetyMarginMs: 3_000, pollMs: args.pollMs },
    fs: countingFileSystem(report.calls),
  });
  for (let i = 0; i < args.rounds; i++) {
    const asked = nowMs();
    const lock = await manager.acquire(
      { node: 'n1', imageId: 'img', mode: 'exclusive' },
      { timeoutMs: 60_000 },
    );
    const at = nowMs();
    report.acquireMs.push(at - asked);
    report.events.push({ kind: 'acquired', at, id: args.id });
    await sleep(HOLD_MS);
    const releasing = nowMs();
    report.events.push({ kind: 'released', at: releasing, id: args.id });
    await lock.release();
    report.releaseMs.push(nowMs() - releasing);
    await sleep(PAUSE_AFTER_RELEASE_MS);
  }
  process.send!(report);
}

/** Two processes taking turns on one key, each through its own view (`roots`) of the same folder. */
async function measure(roots: [string, string], rounds: number, pollMs: number) {
  const reports = await Promise.all(
    (['a', 'b'] as const).map(
      (id, i) =>
        new Promise<ChildReport>((resolve, reject) => {
          const proc = fork(__filename, ['child', JSON.stringify({ root: roots[i], rounds, id, pollMs })]);
          proc.on('message', (m) => resolve(m as ChildReport));
          proc.on('exit', (code) => code !== 0 && reject(new Error(`child exited ${code}`)));
        }),
    ),
  );
  const events = reports.flatMap((r) => r.events).sort((x, y) => x.at - y.at);
  const handoffs: number[] = [];
  for (let i = 1; i < events.length; i++) {
    const [prev, cur] = [events[i - 1]!, events[i]!];
    if (prev.kind === 'released' && cur.kind === 'acquired' && prev.id !== cur.id)
      handoffs.push(cur.at - prev.at);
  }
  const calls: Calls = {};
  for (const r of reports)
    for (const [name, c] of Object.entries(r.calls)) {
      const sum = (calls[name] ??= { n: 0, ms: 0 });
      sum.n += c.n;
      sum.ms += c.ms;
    }
  return {
    handoffs,
    calls,
    releaseMs: reports.flatMap((r) => r.releaseMs),
    acquisitions: rounds * 2,
  };
}

export async function runMountHandoffBench(options: {
  local: string;
  mounts: [string, string];
  rounds?: number;
  repeats?: number;
  pollMs?: number;
  /** What the mounts are (default sshfs); names the results file when not sshfs. */
  label?: string;
}) {
  const label = options.label ?? 'sshfs';
  const rounds = options.rounds ?? 60;
  const repeats = options.repeats ?? 3;
  const pollMs = options.pollMs ?? 100;
  type Side = 'local' | 'mounts';
  const sides: Record<
    Side,
    { p50: number[]; p90: number[]; calls: Calls; release: number[]; acquisitions: number }
  > = {
    local: { p50: [], p90: [], calls: {}, release: [], acquisitions: 0 },
    mounts: { p50: [], p90: [], calls: {}, release: [], acquisitions: 0 },
  };
  for (let r = 0; r < repeats; r++) {
    // Interleaved, so both see the same machine noise; a fresh key folder each time.
    for (const side of ['local', 'mounts'] as Side[]) {
      const sub = `handoff-${side}-${r}`;
      const roots: [string, string] =
        side === 'local'
          ? [path.join(options.local, sub), path.join(options.local, sub)]
          : [path.join(options.mounts[0], sub), path.join(options.mounts[1], sub)];
      await fsp.mkdir(roots[0], { recursive: true });
      const m = await measure(roots, rounds, pollMs);
      await fsp.rm(roots[0], { recursive: true, force: true });
      sides[side].p50.push(percentile(m.handoffs, 50));
      sides[side].p90.push(percentile(m.handoffs, 90));
      sides[side].release.push(...m.releaseMs);
      sides[side].acquisitions += m.acquisitions;
      for (const [name, c] of Object.entries(m.calls)) {
        const sum = (sides[side].calls[name] ??= { n: 0, ms: 0 });
        sum.n += c.n;
        sum.ms += c.ms;
      }
    }
  }
  const summary = (side: Side) => {
    const s = sides[side];
    return {
      p50Ms: round(median(s.p50), 2),
      p90Ms: round(median(s.p90), 2),
      p50Spread: `${round(spread(s.p50).min, 1)}..${round(spread(s.p50).max, 1)}`,
      releaseP50Ms: round(percentile(s.release, 50), 2),
      // Per acquisition: lock file-system calls made and the time they took, by call.
      perAcquisition: Object.fromEntries(
        Object.entries(s.calls).map(([name, c]) => [
          name,
          {
            calls: round(c.n / s.acquisitions, 1),
            ms: round(c.ms / s.acquisitions, 2),
            msEach: round(c.ms / c.n, 2),
          },
        ]),
      ),
    };
  };
  const local = summary('local');
  const mounts = summary('mounts');
  const report = {
    scenario: `lock hand-off between two processes: one local folder vs two ${label} mounts of one folder`,
    date: new Date().toISOString(),
    rounds,
    repeats,
    pollMs,
    local,
    mounts,
    ratioP50: round(mounts.p50Ms / local.p50Ms, 1),
    target: `p50 across mounts <= LOCK_POLL_MS (${pollMs} ms)`,
    met: mounts.p50Ms <= pollMs,
  };
  console.log(JSON.stringify(report, null, 2));
  const out = path.join(__dirname, '..', '..', 'bench', 'results');
  await fsp.mkdir(out, { recursive: true });
  const file = label === 'sshfs' ? 'mount-handoff.json' : `mount-handoff-${label}.json`;
  await fsp.writeFile(path.join(out, file), JSON.stringify(report, null, 2));
  return report;
}

if (require.main === module) {
  if (process.argv[2] === 'child') void child(JSON.parse(process.argv[3]!) as ChildArgs);
  else {
    const options = JSON.parse(process.argv[2] ?? '{}') as Parameters<typeof runMountHandoffBench>[0];
    if (!options.local || options.mounts?.length !== 2) {
      process.stderr.write('mount-handoff: argv[2] must be {"local":"<dir>","mounts":["<a>","<b>"]}\n');
      process.exit(2);
    }
    void runMountHandoffBench(options);
  }
}
