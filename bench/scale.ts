/*
 * Scale: per-request cost as the cell grows (10, 100, 1,000 nodes) and as the queue deepens (10,000
 * requests waiting), each against the smallest case of the same run. Flat is the goal: no scan over
 * all nodes per request.
 * Run: npm run bench:scale   (writes bench/results/scale.json)
 */
import { promises as fsp } from 'node:fs';
import { median, round } from './bench-stats';
import { BenchRequester, requestAll, withCell, writeResults } from './support/bench-cell';

const KiB = 1024;
// The same batch in every cell size (the smallest cell has 9 other nodes), so only the cell size varies.
const COPIES = 9;

async function perRequestMs(nodes: number, rounds: number): Promise<{ copyMs: number; noopMs: number }> {
  const names = Array.from({ length: nodes }, (_, i) => `node-${i}`);
  const copy: number[] = [];
  const noop: number[] = [];
  await withCell(names, async (cell, startConductor) => {
    await cell.seed('node-0', 'img', 64 * KiB);
    await startConductor({ COPY_CONCURRENCY: '4' });
    const client = await BenchRequester.open();
    try {
      for (let r = 0; r < rounds; r++) {
        // Spread over the cell: the destinations differ from round to round.
        const targets = Array.from(
          { length: COPIES },
          (_, i) => names[1 + ((r * COPIES + i) % (nodes - 1))]!,
        );
        for (const node of targets) {
          await fsp.rm(cell.store.entries.imagePath(node, 'img'), { force: true });
          await fsp.rm(cell.store.entries.metaPath(node, 'img'), { force: true });
        }
        // Copies without a source: the conductor must find a holder among all nodes.
        const copies = await requestAll(
          client,
          cell.topology.requestQueue.name,
          targets.map((destination, i) => ({ v: 1, requestId: `c${r}-${i}`, imageId: 'img', destination })),
        );
        if (copies.replies.some((x) => x.status === 'failed'))
          throw new Error(
            `copy failed: ${JSON.stringify(copies.replies.find((x) => x.status === 'failed'))}`,
          );
        copy.push(copies.ms / targets.length);
        const noops = await requestAll(
          client,
          cell.topology.requestQueue.name,
          targets.map((destination, i) => ({ v: 1, requestId: `n${r}-${i}`, imageId: 'img', destination })),
        );
        noop.push(noops.ms / targets.length);
      }
    } finally {
      await client.close();
    }
  });
  return { copyMs: median(copy), noopMs: median(noop) };
}

async function queueDepthRate(depth: number): Promise<number> {
  let rate = 0;
  await withCell(['node-a', 'node-b'], async (cell, startConductor) => {
    await cell.seed('node-b', 'img', 64 * KiB);
    const client = await BenchRequester.open();
    try {
      // Queue everything first, then let one conductor drain it.
      const ids = Array.from({ length: depth }, (_, i) =>
        client.send(cell.topology.requestQueue.name, {
          v: 1,
          requestId: `q${i}`,
          imageId: 'img',
          destination: 'node-b',
        }),
      );
      await new Promise((r) => setTimeout(r, 500));
      await startConductor({ COPY_CONCURRENCY: '4' });
      for (const id of ids) await client.finalReply(id, 900_000);
      // From the first answer to the last: the conductor's start-up is not part of the rate.
      const times = client.replies.map((r) => r.receivedAt).sort((a, b) => a - b);
      rate = ((depth - 1) / (times.at(-1)! - times[0]!)) * 1000;
    } finally {
      await client.close();
    }
  });
  return rate;
}

export async function runScaleBench(options: { rounds?: number } = {}) {
  const rounds = options.rounds ?? 9;
  const nodesRows = [];
  let base: { copyMs: number; noopMs: number } | undefined;
  for (const nodes of [10, 100, 1000]) {
    const m = await perRequestMs(nodes, rounds);
    base ??= m;
    nodesRows.push({
      nodes,
      copyMsPerRequest: round(m.copyMs, 2),
      noopMsPerRequest: round(m.noopMs, 2),
      copyCostVs10: round(m.copyMs / base.copyMs, 2),
      noopCostVs10: round(m.noopMs / base.noopMs, 2),
    });
  }
  const shallow = await queueDepthRate(500);
  const deep = await queueDepthRate(10_000);
  const report = {
    date: new Date().toISOString(),
    rounds,
    nodes: nodesRows,
    queueDepth: {
      shallow500PerSecond: round(shallow, 0),
      deep10000PerSecond: round(deep, 0),
      ratio: round(deep / shallow, 2),
    },
    target: 'per-request cost flat (ratios near 1)',
  };
  console.table(nodesRows);
  console.table([report.queueDepth]);
  await writeResults('scale', report);
  return report;
}

if (require.main === module) void runScaleBench();
