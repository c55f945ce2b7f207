/*
 * `npm run bench:fs` (as root): for each of CephFS and GlusterFS (with the options the start-up check
 * demands), makes a bed with two clients and runs, against a local folder of the same run,
 * bench/mount-handoff.ts (lock hand-off between two processes, one per client), bench/reader-admission.ts
 * (a fan-out's readers of one source, admitted together or one gate claim each) and bench/fs-bed-copy.ts
 * (one 256 MiB copy through a conductor); tears each bed down whatever happens. Options: --rounds N
 * (hand-off rounds), --copy-rounds N, --size-mib N, --only cephfs|glusterfs, --benches handoff,admission,copy.
 */
import { fork } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { compiled } from '../child-processes';
import { GLUSTER_NO_CLIENT_CACHE } from './gluster-volume';
import { SHARED_FS_KINDS, SharedFsBed, type SharedFsKind } from './shared-fs-bed';

const BENCHES = ['handoff', 'admission', 'copy'];

async function runBench(script: string, options: object): Promise<void> {
  const child = fork(compiled(script), [JSON.stringify(options)], { stdio: 'inherit' });
  const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
  if (code !== 0) throw new Error(`${script} exited with ${code}`);
}

async function main(): Promise<void> {
  const flags: Record<string, string> = {};
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i += 2) {
    if (
      !['--rounds', '--copy-rounds', '--size-mib', '--only', '--benches'].includes(args[i]!) ||
      args[i + 1] === undefined
    )
      throw new Error(`bad argument ${JSON.stringify(args[i])}`);
    flags[args[i]!] = args[i + 1]!;
  }
  const number = (flag: string, fallback: number) => {
    const value = Number(flags[flag] ?? fallback);
    if (!Number.isInteger(value) || value <= 0) throw new Error(`${flag} must be a positive integer`);
    return value;
  };
  const kinds = (flags['--only']?.split(',') ?? SHARED_FS_KINDS) as SharedFsKind[];
  const benches = flags['--benches']?.split(',') ?? BENCHES;
  for (const name of benches)
    if (!BENCHES.includes(name)) throw new Error(`--benches: unknown bench ${name} (${BENCHES.join(', ')})`);
  for (const kind of kinds) {
    if (!SHARED_FS_KINDS.includes(kind)) throw new Error(`--only: unknown file system ${kind}`);
    const bed = await SharedFsBed.start(kind, ['a', 'b'], {
      gluster: {
        volumeOptions: { 'performance.stat-prefetch': 'off' },
        clientOptions: GLUSTER_NO_CLIENT_CACHE,
      },
    });
    try {
      const local = path.join(bed.base, 'local');
      await fsp.mkdir(local);
      const mounts = [bed.mount('a'), bed.mount('b')];
      if (benches.includes('handoff'))
        await runBench('bench/mount-handoff.ts', {
          local,
          mounts,
          label: kind,
          rounds: number('--rounds', 60),
        });
      if (benches.includes('admission'))
        await runBench('bench/reader-admission.ts', { local, mounts, label: kind });
      if (benches.includes('copy'))
        await runBench('bench/fs-bed-copy.ts', {
          local,
          mounts,
          label: kind,
          rounds: number('--copy-rounds', 5),
          sizeMiB: number('--size-mib', 256),
        });
    } finally {
      await bed.stop();
    }
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`run-fs-bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
