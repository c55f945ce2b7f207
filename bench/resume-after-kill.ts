/*
 * Resume after a kill: a copy process SIGKILLed once its partial copy is resumable up to 50% (or 90%) of
 * the image; then the time the next copy (resume: true, as the conductor copies) needs to finish,
 * against a fresh copy of the same image in the same run, in this process (no broker, no lock wait:
 * a conductor taking over from a dead one first waits LOCK_STALE_MS for the dead holder's lock). Twice:
 * with the source on the local disk, and behind a 200 MiB/s pipe (bench/support/throttled-reads.ts) as a
 * source on another node is; the resumed prefix is re-hashed from the destination, unthrottled.
 * Run: npm run bench:resume [-- --size-mib 512 --rounds 3]   (writes bench/results/resume-after-kill.json)
 */
import { fork } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ImageStore } from '@app/image-store';
import { median, round, spread } from './bench-stats';
import { writeResults } from './support/bench-cell';
import type { CopyUntilKilledArgs } from './support/copy-until-killed';
import { writeRandomFile } from './support/random-file';
import { installReadThrottle } from './support/throttled-reads';

const MiB = 1024 * 1024;
const IMAGE = 'resume.img';
const CHILD = path.join(__dirname, 'support', 'copy-until-killed.js');

async function verifiedBytes(record: string): Promise<number> {
  try {
    return (
      (JSON.parse(await fsp.readFile(record, 'utf8')) as { verified?: { bytes: number } }).verified?.bytes ??
      0
    );
  } catch {
    return 0; // not there yet, or replaced mid-read
  }
}

/** Kills a copying child once `fraction` of the image is resumable; returns the fraction reached. */
async function killAt(store: ImageStore, root: string, size: number, fraction: number, attemptId: string) {
  const args: CopyUntilKilledArgs = {
    root,
    imageId: IMAGE,
    source: 'node-a',
    destination: 'node-b',
    attemptId,
    slowAfterBytes: Math.floor(size * fraction),
  };
  const child = fork(CHILD, [JSON.stringify(args)], { stdio: 'inherit' });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const record = path.join(store.nodeLayout('node-b').tmp, `${IMAGE}~${attemptId}.origin.part`);
  while ((await verifiedBytes(record)) < size * fraction) {
    if (child.exitCode !== null) throw new Error('the copy child exited before it was killed');
    await new Promise((r) => setTimeout(r, 2));
  }
  child.kill('SIGKILL');
  await exited;
  return (await verifiedBytes(record)) / size;
}

async function unpublish(store: ImageStore): Promise<void> {
  await store.entries.deleteImage('node-b', IMAGE);
}

export async function runResumeAfterKillBench(options: { sizeMiB?: number; rounds?: number } = {}) {
  const rows = [];
  for (const sourceMiBps of [0, 200]) rows.push(...(await resumeRows({ ...options, sourceMiBps })));
  const report = { date: new Date().toISOString(), rounds: options.rounds ?? 3, rows };
  console.table(rows);
  await writeResults('resume-after-kill', report);
  return report;
}

async function resumeRows(options: { sizeMiB?: number; rounds?: number; sourceMiBps: number }) {
  const sizeMiB = options.sizeMiB ?? 512;
  const rounds = options.rounds ?? 3;
  const size = sizeMiB * MiB;
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-bench-resume-'));
  const store = new ImageStore({ root, fsync: false });
  const fresh: number[] = [];
  const resumed: Record<'50' | '90', { ms: number[]; reached: number[] }> = {
    '50': { ms: [], reached: [] },
    '90': { ms: [], reached: [] },
  };
  try {
    for (const node of ['node-a', 'node-b']) await store.markers.registerNode(node, 'bench');
    const staging = path.join(root, 'staging');
    await writeRandomFile(staging, size);
    await store.imports.importImage('node-a', IMAGE, staging);
    await fsp.rm(staging);
    const copy = async (attemptId: string) => {
      const throttle =
        options.sourceMiBps > 0 ? installReadThrottle(root, options.sourceMiBps * MiB) : undefined;
      try {
        const started = performance.now();
        const outcome = await store.copies.copyImage({
          imageId: IMAGE,
          source: 'node-a',
          destination: 'node-b',
          attemptId,
          resume: true,
        });
        return { ms: performance.now() - started, outcome };
      } finally {
        throttle?.uninstall();
      }
    };
    for (let r = 0; r < rounds; r++) {
      fresh.push((await copy(`fresh-${r}`)).ms);
      await unpublish(store);
      for (const percent of ['50', '90'] as const) {
        const reached = await killAt(store, root, size, Number(percent) / 100, `killed-${percent}-${r}`);
        const { ms, outcome } = await copy(`resume-${percent}-${r}`);
        if (outcome.resumedBytes === 0)
          throw new Error(`the copy after the kill at ${percent}% did not resume`);
        resumed[percent].ms.push(ms);
        resumed[percent].reached.push(reached);
        await unpublish(store);
      }
    }
  } finally {
    await fsp.rm(root, { recursive: true, force: true });
  }
  const row = (percent: '50' | '90') => {
    const ratios = resumed[percent].ms.map((ms, i) => ms / fresh[i]!);
    return {
      scenario: `finish after a kill at ${percent}% (${sizeMiB} MiB, source ${options.sourceMiBps ? `${options.sourceMiBps} MiB/s` : 'local disk'})`,
      killedAtMedianPercent: round(100 * median(resumed[percent].reached), 1),
      resumeMs: round(median(resumed[percent].ms), 0),
      freshMs: round(median(fresh), 0),
      ratioVsFresh: round(median(ratios), 2),
      ratioSpread: spread(ratios.map((x) => round(x, 2))),
      // Re-hashing the resumed prefix is a local read; the rest is read from the source.
      idealRatio: round(1 - Number(percent) / 100, 2),
    };
  };
  return [row('50'), row('90')];
}

if (require.main === module) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  void runResumeAfterKillBench({ sizeMiB: arg('--size-mib'), rounds: arg('--rounds') });
}
