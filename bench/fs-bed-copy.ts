/*
 * One big copy (request -> verified, published image through a conductor) with CACHE_ROOT on a shared
 * file system against the same copy on a local folder, interleaved in one run (issue 24, item 8). On the
 * shared side the image is seeded through one client and the conductor works through another.
 * Run through `npm run bench:fs` (as root: it makes the CephFS and GlusterFS beds); alone:
 * node dist/bench/fs-bed-copy.js '{"label":"cephfs","local":"<dir>","mounts":["<view a>","<view b>"]}'
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { median, round, spread } from './bench-stats';
import { BenchCell, BenchConductor, BenchRequester, writeResults } from './support/bench-cell';

const MiB = 1024 * 1024;

interface Side {
  cell: BenchCell;
  conductor: BenchConductor;
  sha256: string;
}

async function side(root: string, conductorRoot: string, bytes: number): Promise<Side> {
  await fsp.mkdir(root, { recursive: true });
  const cell = await BenchCell.create(['node-a', 'node-b'], root);
  const { sha256 } = await cell.seed('node-a', 'big.img', bytes);
  const conductor = await BenchConductor.start(
    cell.conductorEnv({ CACHE_ROOT: conductorRoot, COPY_CONCURRENCY: '1' }),
  ).ready();
  return { cell, conductor, sha256 };
}

async function copyOnce(s: Side, client: BenchRequester, requestId: string): Promise<number> {
  await fsp.rm(s.cell.store.entries.imagePath('node-b', 'big.img'), { force: true });
  await fsp.rm(s.cell.store.entries.metaPath('node-b', 'big.img'), { force: true });
  const started = performance.now();
  const id = client.send(s.cell.topology.requestQueue.name, {
    v: 1,
    requestId,
    imageId: 'big.img',
    source: 'node-a',
    destination: 'node-b',
    sha256: s.sha256,
  });
  const reply = await client.finalReply(id, 600_000);
  if (reply.status !== 'completed') throw new Error(`copy failed: ${JSON.stringify(reply)}`);
  return performance.now() - started;
}

export async function runFsBedCopyBench(options: {
  label: string;
  local: string;
  mounts: [string, string];
  sizeMiB?: number;
  rounds?: number;
}) {
  const sizeMiB = options.sizeMiB ?? 256;
  const rounds = options.rounds ?? 5;
  const sub = `copy-${Date.now()}`;
  const local = await side(path.join(options.local, sub), path.join(options.local, sub), sizeMiB * MiB);
  const shared = await side(
    path.join(options.mounts[0], sub),
    path.join(options.mounts[1], sub),
    sizeMiB * MiB,
  );
  const client = await BenchRequester.open();
  const localMs: number[] = [];
  const sharedMs: number[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      localMs.push(await copyOnce(local, client, `local-${r}`));
      sharedMs.push(await copyOnce(shared, client, `shared-${r}`));
    }
  } finally {
    await client.close();
    for (const s of [local, shared]) {
      await s.conductor.kill();
      await s.cell.cleanup();
    }
  }
  const ratios = sharedMs.map((ms, i) => ms / localMs[i]!);
  const report = {
    scenario: `${sizeMiB} MiB copy through a conductor: CACHE_ROOT on ${options.label} (seeded through one client, copied through another) vs a local folder`,
    date: new Date().toISOString(),
    rounds,
    localMs: round(median(localMs), 0),
    localSpreadMs: spread(localMs.map((x) => round(x, 0))),
    sharedMs: round(median(sharedMs), 0),
    sharedSpreadMs: spread(sharedMs.map((x) => round(x, 0))),
    ratio: round(median(ratios), 2),
    ratioSpread: spread(ratios.map((x) => round(x, 2))),
  };
  console.log(JSON.stringify(report, null, 2));
  await writeResults(`fs-bed-copy-${options.label}`, report);
  return report;
}

if (require.main === module)
  runFsBedCopyBench(JSON.parse(process.argv[2]!) as Parameters<typeof runFsBedCopyBench>[0]).then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`fs-bed-copy: ${error instanceof Error ? error.stack : String(error)}\n`);
      process.exit(1);
    },
  );
