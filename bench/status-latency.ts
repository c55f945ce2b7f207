/*
 * Is the conductor's main thread free while it copies? Latency of GET /status on the admin endpoint,
 * polled back to back while 4 copies of a 1 GiB image run at once, against the same polling of the same
 * conductor when idle, in the same run; once with the copy workers (HASH_WORKERS default: the machine's
 * cores) and once with the copies on the main thread (HASH_WORKERS=0). Also the wall time of the 4 copies
 * in each mode.
 * Run: npm run bench:status [-- --size-mib 1024 --rounds 3]   (writes bench/results/status-latency.json)
 */
import { promises as fsp } from 'node:fs';
import { numberFlag } from './support/cli-args';
import { median, percentile, round, spread } from './bench-stats';
import {
  type BenchCell,
  BenchRequester,
  type StartConductor,
  withCell,
  writeResults,
} from './support/bench-cell';

const MiB = 1024 * 1024;
const COPIES = 4;
const DESTINATIONS = Array.from({ length: COPIES }, (_, i) => `node-d${i}`);

/** Polls GET /status one request after another until `until` settles; returns each latency in ms. */
async function pollStatus(port: number, until: Promise<unknown>): Promise<number[]> {
  let done = false;
  void until.finally(() => (done = true));
  const latencies: number[] = [];
  while (!done) {
    const started = performance.now();
    const response = await fetch(`http://127.0.0.1:${port}/status`);
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`GET /status answered ${response.status}`);
    latencies.push(performance.now() - started);
  }
  return latencies;
}

interface ModeResult {
  idleP99: number[];
  busyP99: number[];
  busyP50: number[];
  busyMax: number[];
  copiesMs: number[];
}

/** One round of one mode, on a conductor of its own (so the two modes can alternate round by round). */
async function measureRound(
  cell: BenchCell,
  startConductor: StartConductor,
  env: Record<string, string>,
  image: { sha256: string },
  r: number,
  label: string,
  result: ModeResult,
): Promise<void> {
  const conductor = await startConductor({ COPY_CONCURRENCY: String(COPIES), ...env });
  const port = conductor.adminPort();
  const client = await BenchRequester.open();
  try {
    for (const node of DESTINATIONS) {
      await fsp.rm(cell.store.entries.imagePath(node, 'big.img'), { force: true });
      await fsp.rm(cell.store.entries.metaPath(node, 'big.img'), { force: true });
    }
    const idle = await pollStatus(port, new Promise((resolve) => setTimeout(resolve, 1000)));
    const started = performance.now();
    const copies = Promise.all(
      DESTINATIONS.map(async (destination) => {
        const id = client.send(cell.topology.requestQueue.name, {
          v: 1,
          requestId: `${label}-${r}-${destination}`,
          imageId: 'big.img',
          source: 'node-a',
          destination,
          sha256: image.sha256,
        });
        const reply = await client.finalReply(id, 600_000);
        if (reply.status !== 'completed') throw new Error(`copy failed: ${JSON.stringify(reply)}`);
      }),
    ).then(() => result.copiesMs.push(performance.now() - started));
    const busy = await pollStatus(port, copies);
    await copies;
    result.idleP99.push(percentile(idle, 99));
    result.busyP99.push(percentile(busy, 99));
    result.busyP50.push(percentile(busy, 50));
    result.busyMax.push(Math.max(...busy));
  } finally {
    await client.close();
    await conductor.kill();
  }
}

const emptyResult = (): ModeResult => ({ idleP99: [], busyP99: [], busyP50: [], busyMax: [], copiesMs: [] });

function summary(mode: ModeResult) {
  const ratios = mode.busyP99.map((b, i) => b / mode.idleP99[i]!);
  return {
    idleP99Ms: round(median(mode.idleP99), 1),
    busyP50Ms: round(median(mode.busyP50), 1),
    busyP99Ms: round(median(mode.busyP99), 1),
    busyP99SpreadMs: spread(mode.busyP99.map((x) => round(x, 1))),
    busyMaxMs: round(median(mode.busyMax), 1),
    busyOverIdleP99: round(median(ratios), 1),
    busyOverIdleP99Spread: spread(ratios.map((x) => round(x, 1))),
    copiesMs: round(median(mode.copiesMs), 0),
    copiesSpreadMs: spread(mode.copiesMs.map((x) => round(x, 0))),
  };
}

export async function runStatusLatencyBench(options: { sizeMiB?: number; rounds?: number } = {}) {
  const sizeMiB = options.sizeMiB ?? 1024;
  const rounds = options.rounds ?? 3;
  const { workers, mainThread } = await withCell(
    ['node-a', ...DESTINATIONS],
    async (cell, startConductor) => {
      const image = await cell.seed('node-a', 'big.img', sizeMiB * MiB);
      const results = { workers: emptyResult(), mainThread: emptyResult() };
      // The modes alternate, first one then the other, so that a slow phase of the machine hits both.
      for (let r = 0; r < rounds; r++) {
        const order =
          r % 2 === 0 ? (['workers', 'mainThread'] as const) : (['mainThread', 'workers'] as const);
        for (const mode of order) {
          const env: Record<string, string> = mode === 'workers' ? {} : { HASH_WORKERS: '0' };
          await measureRound(cell, startConductor, env, image, r, mode, results[mode]);
        }
      }
      return results;
    },
  );
  const ours = summary(workers);
  const inline = summary(mainThread);
  const report = {
    scenario: `GET /status latency while ${COPIES} copies of ${sizeMiB} MiB run, vs idle; copy workers vs main thread`,
    date: new Date().toISOString(),
    rounds,
    workers: ours,
    mainThread: inline,
    p99WorkersVsMainThread: round(inline.busyP99Ms / ours.busyP99Ms, 1),
    copiesSpeedupVsMainThread: round(inline.copiesMs / ours.copiesMs, 2),
    target: 'p99 during copies near idle (the main thread stays responsive)',
  };
  console.log(JSON.stringify(report, null, 2));
  await writeResults('status-latency', report);
  return report;
}

if (require.main === module) {
  void runStatusLatencyBench({ sizeMiB: numberFlag('--size-mib'), rounds: numberFlag('--rounds') });
}
