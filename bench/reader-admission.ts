/*
 * Readers of one source arriving together, as a fan-out's copies do (issues 24 and 27): `processes`
 * lock managers (conductors), each on a mount of its own in turn, each asking for the shared lock of one
 * key `readers` times at once and holding each for `holdMs`. Measured: the time from the start until every
 * reader holds the lock, and the gate claims tried per reader (mkdir of a generation, won or lost, counted through the
 * lock manager's file-system seam), with readers admitted together (readerBatch default) against one
 * claim per reader (readerBatch 1, as before 1.1.0), interleaved in one run, on a local folder and on the
 * mounts. `npm run bench:fs` runs it on each bed; alone:
 * node dist/bench/reader-admission.js '{"local":"<dir>","mounts":["<a>","<b>"],"label":"<fs>"}'
 */
import { fork } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type LockFileSystem, NodeLockManager, nodeLockFileSystem } from '@app/locking';
import { median, round, spread } from './bench-stats';

interface ChildArgs {
  root: string;
  id: string;
  readers: number;
  holdMs: number;
  readerBatch?: number;
}
interface ChildReport {
  /** Epoch ms (performance.timeOrigin based) at which each reader held the lock. */
  heldAt: number[];
  claims: number;
}

const epochMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function child(args: ChildArgs): Promise<void> {
  let claims = 0;
  const fs: LockFileSystem = {
    ...nodeLockFileSystem,
    mkdir: async (dir, options) => {
      if (/\/g-\d+$/.test(dir)) claims++;
      return nodeLockFileSystem.mkdir(dir, options);
    },
  };
  const manager = new NodeLockManager({
    root: args.root,
    conductorId: args.id,
    // The campaigns' timings on the beds (test/campaigns/campaign-fs.ts).
    timings: { staleMs: 4_000, updateMs: 1_000, safetyMarginMs: 1_000, pollMs: 20 },
    fs,
    readerBatch: args.readerBatch,
  });
  process.send!({ ready: true });
  await new Promise<void>((resolve) => process.once('message', () => resolve()));
  const heldAt: number[] = [];
  await Promise.all(
    Array.from({ length: args.readers }, async (_, i) => {
      const lock = await manager.acquire(
        { node: 'src', imageId: 'img', mode: 'shared' },
        { timeoutMs: 120_000, attemptId: `r${i}` },
      );
      heldAt.push(epochMs());
      await sleep(args.holdMs);
      await lock.release();
    }),
  );
  process.send!({ heldAt, claims } satisfies ChildReport);
}

/** One trial: every process starts its readers at the same moment; the time until the last one holds. */
async function trial(roots: string[], args: Omit<ChildArgs, 'root' | 'id'>) {
  const procs = roots.map((root, i) =>
    fork(__filename, ['child', JSON.stringify({ ...args, root, id: `c${i}` })]),
  );
  const reports = procs.map(
    (proc) =>
      new Promise<ChildReport>((resolve, reject) => {
        proc.on('message', (m: { ready?: boolean } & ChildReport) => m.ready || resolve(m));
        proc.on('exit', (code) => code !== 0 && reject(new Error(`child exited ${code}`)));
      }),
  );
  await Promise.all(
    procs.map((proc) => new Promise<void>((resolve) => proc.once('message', () => resolve()))),
  );
  const started = epochMs();
  for (const proc of procs) proc.send('go');
  const done = await Promise.all(reports);
  const lastHeldMs = Math.max(...done.flatMap((r) => r.heldAt)) - started;
  const readers = roots.length * args.readers;
  return { lastHeldMs, mkdirsPerReader: done.reduce((n, r) => n + r.claims, 0) / readers };
}

export async function runReaderAdmissionBench(options: {
  local: string;
  mounts: string[];
  label: string;
  processes?: number;
  readers?: number;
  holdMs?: number;
  repeats?: number;
}) {
  const processes = options.processes ?? 3;
  const readers = options.readers ?? 10;
  const holdMs = options.holdMs ?? 1_000;
  const repeats = options.repeats ?? 3;
  const variants = { together: undefined, onePerReader: 1 } as const;
  type Row = { lastHeldMs: number[]; mkdirsPerReader: number[] };
  const rows: Record<string, Row> = {};
  for (let r = 0; r < repeats; r++) {
    // Interleaved, so that every variant sees the same machine noise; a fresh key folder each time.
    for (const where of ['local', 'mounts'] as const)
      for (const [variant, readerBatch] of Object.entries(variants)) {
        const sub = `admission-${where}-${variant}-${r}`;
        const roots = Array.from({ length: processes }, (_, i) =>
          path.join(where === 'local' ? options.local : options.mounts[i % options.mounts.length]!, sub),
        );
        await fsp.mkdir(roots[0]!, { recursive: true });
        const m = await trial(roots, { readers, holdMs, readerBatch });
        await fsp.rm(roots[0]!, { recursive: true, force: true });
        const row = (rows[`${where} ${variant}`] ??= { lastHeldMs: [], mkdirsPerReader: [] });
        row.lastHeldMs.push(m.lastHeldMs);
        row.mkdirsPerReader.push(m.mkdirsPerReader);
      }
  }
  const summary = Object.fromEntries(
    Object.entries(rows).map(([name, row]) => [
      name,
      {
        allHeldMsMedian: round(median(row.lastHeldMs), 0),
        allHeldMsSpread: `${round(spread(row.lastHeldMs).min, 0)}..${round(spread(row.lastHeldMs).max, 0)}`,
        gateMkdirsPerReader: round(median(row.mkdirsPerReader), 2),
      },
    ]),
  );
  const ratio = (where: string) =>
    round(
      median(rows[`${where} onePerReader`]!.lastHeldMs) / median(rows[`${where} together`]!.lastHeldMs),
      2,
    );
  const report = {
    scenario: `${processes} processes x ${readers} readers of one key at once, each held ${holdMs} ms: local folder vs ${options.label} mounts`,
    date: new Date().toISOString(),
    repeats,
    summary,
    speedUpTogether: { local: ratio('local'), mounts: ratio('mounts') },
  };
  console.log(JSON.stringify(report, null, 2));
  const out = path.join(__dirname, '..', '..', 'bench', 'results');
  await fsp.mkdir(out, { recursive: true });
  await fsp.writeFile(
    path.join(out, `reader-admission-${options.label}.json`),
    JSON.stringify(report, null, 2),
  );
  return report;
}

if (require.main === module) {
  if (process.argv[2] === 'child') void child(JSON.parse(process.argv[3]!) as ChildArgs);
  else {
    const options = JSON.parse(process.argv[2] ?? '{}') as Parameters<typeof runReaderAdmissionBench>[0];
    if (!options.local || !options.mounts?.length || !options.label) {
      process.stderr.write(
        'reader-admission: argv[2] must be {"local":"<dir>","mounts":["<a>",...],"label":"<fs>"}\n',
      );
      process.exit(2);
    }
    void runReaderAdmissionBench(options);
  }
}
