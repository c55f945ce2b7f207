/*
 * `npm run bench:hosts` (as root): makes a two-host bed (test/support/hosts, no broker), runs
 * bench/mount-handoff.ts with a local folder of the bed's machine and the two hosts' mounts of one
 * folder, and tears the bed down whatever happens. Options go to the bench as JSON: --rounds N --repeats N
 * --poll-ms N.
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
  const bed = await HostBed.create({ hosts: ['a', 'b'], brokers: 0 });
  try {
    const local = path.join(bed.base, 'local');
    await fsp.mkdir(local);
    const options = { local, mounts: [bed.cacheRoot('a'), bed.cacheRoot('b')], ...extra };
    const bench = fork(compiled('bench/mount-handoff.ts'), [JSON.stringify(options)], { stdio: 'inherit' });
    return await new Promise<number>((resolve) => bench.on('exit', (code) => resolve(code ?? 1)));
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
