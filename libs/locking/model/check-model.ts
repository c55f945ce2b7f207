/**
 * npm run model:check: the lock protocol model at larger bounds than npm test's, with states and time.
 *   --ci            the CI bounds instead
 *   --write-trails  also write the variants' counterexamples to libs/locking/model/trails/
 *   --only=<text>   only the runs whose name contains <text>
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CI_RUNS, LARGE_RUNS, describeResult, requireTools, runModel } from './spin-check';

function main(): number {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--ci' && a !== '--write-trails' && !a.startsWith('--only='));
  if (unknown.length > 0) {
    console.error(`unknown argument ${unknown.join(', ')}: expected --ci, --write-trails, --only=<text>`);
    return 2;
  }
  const only = args.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  requireTools();
  const all = args.includes('--ci') ? CI_RUNS : [...LARGE_RUNS, ...CI_RUNS.filter((r) => r.expectError)];
  const runs = only === undefined ? all : all.filter((r) => r.name.includes(only));
  if (runs.length === 0) {
    console.error(`--only=${only}: no run's name contains it`);
    return 2;
  }
  // The trails go to the source folder (this script runs from dist/).
  const trailDir = path.resolve(__dirname, '../../../../libs/locking/model/trails');
  let failed = 0;
  for (const run of runs) {
    const result = runModel(run, { memLimitMb: 8192, hashCompaction: !run.expectError });
    const ok = run.expectError ? result.errors > 0 : result.errors === 0;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${describeResult(result)}`);
    console.log(`     ${result.commands.slice(0, 3).join(' && ')}`);
    if (!ok) {
      failed++;
      if (result.trail) console.log(result.trail);
    }
    if (args.includes('--write-trails') && run.expectError && result.trail) {
      const name = Object.keys(run.defines).find((d) => !/^(NEXCL|NREAD|MAXFAULTS|MAXREMOVALS)$/.test(d))!;
      fs.mkdirSync(trailDir, { recursive: true });
      const header = `# ${run.name}\n# produced by: ${result.commands.join(' && ')}\n`;
      fs.writeFileSync(path.join(trailDir, `${name}.txt`), `${header}${result.trail}\n`);
      fs.writeFileSync(path.join(trailDir, `${name}.trail`), result.trailFile ?? '');
    }
  }
  return failed === 0 ? 0 : 1;
}

process.exitCode = main();
