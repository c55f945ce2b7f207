/*
 * A fan-out across hosts: one image on `origin` copied to 12 nodes at once by the conductor's copy
 * composition (CopyWorkflow, SourceSelector, holder index, node-local locks; in-process, no broker), either
 * by one host (one workflow on one sshfs mount) or by three hosts (three workflows, each on its own mount
 * of the same folder, the destinations dealt out in turn), and on a local folder for reference; in one run,
 * rounds interleaved. The mounts come from the multi-host bed: `npm run bench:hosts` (as root).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ImageStore } from '@app/image-store';
import { NodeLockManager, newAttemptId } from '@app/locking';
import { CopyWorkflow, ImageHolderIndex, SourceSelector } from '../apps/conductor/src';
import { median, round, spread } from './bench-stats';
import { writeRandomFile } from './support/random-file';

const MiB = 1024 * 1024;
const DESTINATIONS = 12;
const IMAGE_MIB = 16;
const IMAGE = 'golden.raw';
const quiet = { warn: () => undefined, debug: () => undefined };

/** One fan-out through `roots` (one view per host of the same folder); resolves with its time. */
async function fanOut(
  roots: string[],
  destinations: string[],
): Promise<{ ms: number; sources: number; retries: number }> {
  const setup = new ImageStore({ root: roots[0]!, fsync: false });
  for (const node of destinations) {
    await fsp.rm(path.join(roots[0]!, node), { recursive: true, force: true });
    await setup.markers.registerNode(node, 'bench');
  }
  const hosts = roots.map((root, i) => {
    const store = new ImageStore({ root, fsync: false });
    const locks = new NodeLockManager({ root, conductorId: `host${i}`, requireNodeFolder: true });
    const index = new ImageHolderIndex(store.entries);
    const selector = new SourceSelector(store, { index, readLimit: 4, conductorId: `host${i}` });
    return { locks, workflow: new CopyWorkflow(store, locks, selector, { lockWaitMs: 600_000, log: quiet }) };
  });
  let retries = 0;
  // A retryable failure is run again, as the conductor's retry path would (and counted).
  const copy = async (destination: string, i: number) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await hosts[i % hosts.length]!.workflow.run(
          { imageId: IMAGE, destination },
          { attemptId: newAttemptId() },
        );
      } catch (error) {
        if (!(error as { retryable?: boolean }).retryable || attempt >= 5) throw error;
        retries++;
      }
    }
  };
  const started = performance.now();
  const results = await Promise.all(destinations.map(copy));
  const ms = performance.now() - started;
  for (const h of hosts) await h.locks.releaseAll();
  const sources = new Set<string>();
  for (const r of results) {
    if (r.status !== 'completed') throw new Error(`a copy did not complete: ${JSON.stringify(r)}`);
    sources.add(r.source!);
  }
  return { ms, sources: sources.size, retries };
}

export async function runFanoutHostsBench(options: { local: string; mounts: string[]; rounds?: number }) {
  if (options.mounts.length < 3) throw new Error('fanout-hosts needs three mounts of one folder');
  const rounds = options.rounds ?? 3;
  const destinations = Array.from({ length: DESTINATIONS }, (_, i) => `dest-${i}`);
  const scenarios: Record<string, { roots: string[]; ms: number[]; sources: number[]; retries: number }> = {
    local: { roots: [options.local], ms: [], sources: [], retries: 0 },
    oneHost: { roots: [options.mounts[0]!], ms: [], sources: [], retries: 0 },
    threeHosts: { roots: options.mounts.slice(0, 3), ms: [], sources: [], retries: 0 },
  };
  for (const root of [options.local, options.mounts[0]!]) {
    const store = new ImageStore({ root, fsync: false });
    await store.markers.registerNode('origin', 'bench');
    const file = path.join(root, '.bench-image');
    await writeRandomFile(file, IMAGE_MIB * MiB);
    await store.imports.importImage('origin', IMAGE, file);
    await fsp.rm(file);
  }
  for (let r = 0; r < rounds; r++)
    for (const s of Object.values(scenarios)) {
      const run = await fanOut(s.roots, destinations);
      s.ms.push(run.ms);
      s.sources.push(run.sources);
      s.retries += run.retries;
    }
  const summary = (name: string) => {
    const s = scenarios[name]!;
    return {
      ms: round(median(s.ms), 0),
      spread: `${round(spread(s.ms).min, 0)}..${round(spread(s.ms).max, 0)}`,
      sources: median(s.sources),
      retries: s.retries,
    };
  };
  const report = {
    scenario: `one ${IMAGE_MIB} MiB image to ${DESTINATIONS} nodes: three hosts (own mounts) vs one host vs local`,
    date: new Date().toISOString(),
    rounds,
    local: summary('local'),
    oneHost: summary('oneHost'),
    threeHosts: summary('threeHosts'),
    ratioThreeHostsVsOneHost: round(median(scenarios.oneHost!.ms) / median(scenarios.threeHosts!.ms), 2),
    ratioOneHostVsLocal: round(median(scenarios.oneHost!.ms) / median(scenarios.local!.ms), 2),
  };
  console.log(JSON.stringify(report, null, 2));
  const out = path.join(__dirname, '..', '..', 'bench', 'results');
  await fsp.mkdir(out, { recursive: true });
  await fsp.writeFile(path.join(out, 'fanout-hosts.json'), JSON.stringify(report, null, 2));
  return report;
}

if (require.main === module) {
  const options = JSON.parse(process.argv[2] ?? '{}') as Parameters<typeof runFanoutHostsBench>[0];
  runFanoutHostsBench(options).catch((error: unknown) => {
    process.stderr.write(`fanout-hosts: ${String(error)}\n`);
    process.exit(1);
  });
}
