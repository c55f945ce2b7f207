/*
 * Lock hand-off latency between two processes: time from one holder's release to the waiting process's
 * acquisition, for our locks and for proper-lockfile used plainly with its retry option, in one run.
 * Run: npm run bench:handoff  (writes bench/results/lock-handoff.json)
 */
import { fork } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as lockfile from 'proper-lockfile';
import { NodeLockManager } from '@app/locking';
import { median, nowMs, percentile, round, spread } from './bench-stats';

type Impl = 'ours' | 'proper-lockfile';
interface ChildArgs {
  impl: Impl;
  root: string;
  rounds: number;
  id: string;
}
type Event = { kind: 'acquired' | 'released'; at: number; id: string };

const HOLD_MS = 3;
const PAUSE_AFTER_RELEASE_MS = 8; // long enough that the other process is surely waiting
// The plain baseline as commonly configured: retry with exponential backoff between 5 and 100 ms.
const PLAIN_RETRIES = { retries: 100_000, factor: 1.5, minTimeout: 5, maxTimeout: 100 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function child(args: ChildArgs): Promise<void> {
  const events: Event[] = [];
  const manager = new NodeLockManager({
    root: args.root,
    conductorId: args.id,
    timings: { staleMs: 10_000, pollMs: 100 },
  });
  const target = path.join(args.root, 'plain-target');
  await fsp.writeFile(target, '', { flag: 'a' });
  for (let i = 0; i < args.rounds; i++) {
    if (args.impl === 'ours') {
      const lock = await manager.acquire(
        { node: 'n1', imageId: 'img', mode: 'exclusive' },
        { timeoutMs: 60_000 },
      );
      events.push({ kind: 'acquired', at: nowMs(), id: args.id });
      await sleep(HOLD_MS);
      events.push({ kind: 'released', at: nowMs(), id: args.id });
      await lock.release();
    } else {
      const release = await lockfile.lock(target, { retries: PLAIN_RETRIES, stale: 10_000, realpath: false });
      events.push({ kind: 'acquired', at: nowMs(), id: args.id });
      await sleep(HOLD_MS);
      events.push({ kind: 'released', at: nowMs(), id: args.id });
      await release();
    }
    await sleep(PAUSE_AFTER_RELEASE_MS);
  }
  process.send!(events);
}

async function measure(impl: Impl, rounds: number): Promise<number[]> {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-bench-handoff-'));
  try {
    const runs = ['a', 'b'].map(
      (id) =>
        new Promise<Event[]>((resolve, reject) => {
          const proc = fork(__filename, ['child', JSON.stringify({ impl, root, rounds, id })]);
          proc.on('message', (m) => resolve(m as Event[]));
          proc.on('exit', (code) => code !== 0 && reject(new Error(`child exited ${code}`)));
        }),
    );
    const events = (await Promise.all(runs)).flat().sort((x, y) => x.at - y.at);
    // A hand-off: an acquisition right after the other process's release.
    const handoffs: number[] = [];
    for (let i = 1; i < events.length; i++) {
      const [prev, cur] = [events[i - 1]!, events[i]!];
      if (prev.kind === 'released' && cur.kind === 'acquired' && prev.id !== cur.id)
        handoffs.push(cur.at - prev.at);
    }
    return handoffs;
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
}

export async function runLockHandoffBench(options: { rounds?: number; repeats?: number } = {}) {
  const rounds = options.rounds ?? 200;
  const repeats = options.repeats ?? 5;
  const results: Record<Impl, { p50: number[]; p99: number[]; samples: number }> = {
    ours: { p50: [], p99: [], samples: 0 },
    'proper-lockfile': { p50: [], p99: [], samples: 0 },
  };
  for (let r = 0; r < repeats; r++) {
    // Interleaved, so both see the same machine noise.
    for (const impl of ['ours', 'proper-lockfile'] as Impl[]) {
      const handoffs = await measure(impl, rounds);
      results[impl].p50.push(percentile(handoffs, 50));
      results[impl].p99.push(percentile(handoffs, 99));
      results[impl].samples += handoffs.length;
    }
  }
  const summary = (impl: Impl) => ({
    p50Ms: round(median(results[impl].p50), 3),
    p99Ms: round(median(results[impl].p99), 3),
    p50Spread: spread(results[impl].p50).min.toFixed(3) + '..' + spread(results[impl].p50).max.toFixed(3),
    samples: results[impl].samples,
  });
  const ours = summary('ours');
  const plain = summary('proper-lockfile');
  const report = {
    scenario: 'lock hand-off between two processes (release -> waiter acquires)',
    date: new Date().toISOString(),
    rounds,
    repeats,
    ours,
    baseline: { name: `proper-lockfile lock() with retries ${JSON.stringify(PLAIN_RETRIES)}`, ...plain },
    ratioP50: round(plain.p50Ms / ours.p50Ms, 1),
    target: 'p50 <= 5 ms',
  };
  console.table({ ours, 'proper-lockfile (plain, retries)': plain });
  console.log(`p50 hand-off: ours ${ours.p50Ms} ms vs plain ${plain.p50Ms} ms -> ${report.ratioP50}x faster`);
  await fsp.mkdir(path.join(__dirname, '..', '..', 'bench', 'results'), { recursive: true });
  await fsp.writeFile(
    path.join(__dirname, '..', '..', 'bench', 'results', 'lock-handoff.json'),
    JSON.stringify(report, null, 2),
  );
  return report;
}

if (require.main === module) {
  if (process.argv[2] === 'child') void child(JSON.parse(process.argv[3]!) as ChildArgs);
  else void runLockHandoffBench();
}
