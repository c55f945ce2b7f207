/*
 * `npm run bench:hosts` (as root): makes a three-host bed (test/support/hosts, no broker), runs
 * bench/mount-handoff.ts (two hosts' mounts) and bench/fanout-hosts.ts (three) with a local folder of the
 * bed's machine as the one-folder reference, and tears the bed down whatever happens. Options go to the
 * benches as JSON: --rounds N --repeats N --poll-ms N.
 */
import { fork } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { compiled } from '../child-processes';
import { HostBed } from './host-bed';

async function main(): Promise<number> {
  const extra: Record<string, number> = {};
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i += 2) {
    const name = { '--rounds': 'rounds', '--repeats': 'repeats', '--poll-ms': 'pollMs' }[args[i]!];
    const value = Number(args[i + 1]);
    if (!name || !Number.isInteger(value) || value <= 0) {
      process.stderr.write(
        `run-host-bench: bad argument ${JSON.stringify(args[i])} ${JSON.stringify(args[i + 1])}\n`,
      );
      return 2;
    }
    extra[name] = value;
  }
  const bed = await HostBed.create({ hosts: ['a', 'b', 'c'], brokers: 0 });
  try {
    const local = path.join(bed.base, 'local');
    await fsp.mkdir(local);
    const mounts = bed.hosts.map((h) => bed.cacheRoot(h));
    for (const bench of ['bench/mount-handoff.ts', 'bench/fanout-hosts.ts']) {
      // The flags are the hand-off bench's; the fan-out keeps its own rounds.
      const options = bench.includes('handoff')
        ? { local, mounts: mounts.slice(0, 2), ...extra }
        : { local, mounts };
      const child = fork(compiled(bench), [JSON.stringify(options)], { stdio: 'inherit' });
      const code = await new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? 1)));
      if (code !== 0) return code;
    }
    return 0;
  } finally {
    await bed.teardown();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`run-host-bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
