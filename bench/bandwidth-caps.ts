/*
 * Bandwidth caps: one conductor with NODE_READ_BPS capping node-a only (and BACKGROUND_READ_BPS lower
 * for background copies of node-a). Measured per round, from the results' durations.copyMs:
 * - an interactive copy from node-a: its rate against the cap (target within 10%);
 * - a background copy from node-a: its rate against the background cap;
 * - a copy from uncapped node-c while the capped copy runs, against the same copy alone in this run
 *   (target: it keeps its speed).
 * Run: npm run bench:caps [-- --size-mib 256 --rounds 3]   (writes bench/results/bandwidth-caps.json)
 */
import { median, round, spread } from './bench-stats';
import { BenchRequester, withCell, writeResults } from './support/bench-cell';

const MiB = 1024 * 1024;

export async function runBandwidthCapsBench(options: { sizeMiB?: number; rounds?: number } = {}) {
  const sizeMiB = options.sizeMiB ?? 256;
  const rounds = options.rounds ?? 3;
  const capMiBps = 40;
  const backgroundCapMiBps = 10;
  const interactiveRate: number[] = [];
  const backgroundRate: number[] = [];
  const uncappedAlone: number[] = [];
  const uncappedBeside: number[] = [];
  await withCell(['node-a', 'node-b', 'node-c', 'node-d'], async (cell, startConductor) => {
    const size = sizeMiB * MiB;
    const small = Math.max(1, Math.floor(sizeMiB / 4)) * MiB;
    const capped = await cell.seed('node-a', 'capped.img', size);
    await cell.seed('node-a', 'background.img', small);
    await cell.seed('node-c', 'free.img', size);
    await startConductor({
      NODE_READ_BPS: `node-a=${capMiBps}Mi`,
      BACKGROUND_READ_BPS: `node-a=${backgroundCapMiBps}Mi`,
    });
    const client = await BenchRequester.open();
    const queue = cell.topology.requestQueue.name;
    let n = 0;
    const copy = async (imageId: string, source: string, destination: string, priority?: string) => {
      await cell.store.entries.deleteImage(destination, imageId);
      const id = client.send(queue, {
        v: 1,
        requestId: `caps-${n++}`,
        imageId,
        source,
        destination,
        ...(priority ? { priority } : {}),
      });
      const reply = await client.finalReply(id, 600_000);
      if (reply.status !== 'completed') throw new Error(`copy failed: ${JSON.stringify(reply)}`);
      const durations = reply.durations as { copyMs: number };
      return { copyMs: durations.copyMs, bytes: reply.bytes as number };
    };
    const rate = (r: { copyMs: number; bytes: number }) => r.bytes / MiB / (r.copyMs / 1000);
    try {
      if (capped.size !== size) throw new Error('seeding failed');
      for (let r = 0; r < rounds; r++) {
        uncappedAlone.push((await copy('free.img', 'node-c', 'node-d')).copyMs);
        const cappedCopy = copy('capped.img', 'node-a', 'node-b');
        // Start the uncapped copy while the capped one runs (it needs about size / cap seconds).
        await new Promise((resolve) => setTimeout(resolve, 500));
        uncappedBeside.push((await copy('free.img', 'node-c', 'node-d')).copyMs);
        interactiveRate.push(rate(await cappedCopy));
        backgroundRate.push(rate(await copy('background.img', 'node-a', 'node-b', 'background')));
      }
    } finally {
      await client.close();
    }
  });
  const ofCap = interactiveRate.map((x) => x / capMiBps);
  const ofBackgroundCap = backgroundRate.map((x) => x / backgroundCapMiBps);
  const keptSpeed = uncappedAlone.map((alone, i) => alone / uncappedBeside[i]!);
  const report = {
    date: new Date().toISOString(),
    rounds,
    rows: [
      {
        scenario: `interactive copy from node-a capped at ${capMiBps} MiB/s (${sizeMiB} MiB)`,
        measured: `${round(median(interactiveRate), 1)} MiB/s`,
        ratio: round(median(ofCap), 3),
        spread: spread(ofCap.map((x) => round(x, 3))),
        target: '0.9..1.1 of the cap',
      },
      {
        scenario: `background copy from node-a, background cap ${backgroundCapMiBps} MiB/s`,
        measured: `${round(median(backgroundRate), 1)} MiB/s`,
        ratio: round(median(ofBackgroundCap), 3),
        spread: spread(ofBackgroundCap.map((x) => round(x, 3))),
        target: '0.9..1.1 of the background cap',
      },
      {
        scenario: `uncapped node-c beside the capped copy vs alone (${sizeMiB} MiB)`,
        measured: `${round(median(uncappedBeside), 0)} ms vs ${round(median(uncappedAlone), 0)} ms`,
        ratio: round(median(keptSpeed), 2),
        spread: spread(keptSpeed.map((x) => round(x, 2))),
        target: 'keeps its speed (about 1)',
      },
    ],
  };
  console.table(report.rows);
  await writeResults('bandwidth-caps', report);
  return report;
}

if (require.main === module) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  void runBandwidthCapsBench({ sizeMiB: arg('--size-mib'), rounds: arg('--rounds') });
}
