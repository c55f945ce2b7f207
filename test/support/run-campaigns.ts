/*
 * `npm run campaign [-- --seed N] [--size ci|large] [--fs local|cephfs|glusterfs] [--tls]
 *   [--only chaos,locks,broker,fs,clock,bad-input,hosts,mixed,pieces,lock-processes,cephfs-race,beds]`: runs the
 * issue-8 campaigns (test/campaign-*.e2e-spec.ts, the same code `npm test` runs at CI size) through vitest,
 * one file at a time, with CAMPAIGN_SIZE and CAMPAIGN_SEED set, then prints the figures each campaign
 * wrote to test-output/campaigns/. CAMPAIGN_SEED / CAMPAIGN_SIZE / CAMPAIGN_FS from the environment work too.
 * `--fs cephfs|glusterfs` puts the shared folder on a CephFS or GlusterFS bed of the campaign's own
 * (test/campaigns/campaign-fs.ts; the across-hosts campaign mounts it on every host); the campaigns
 * that take the option are FS_CAMPAIGNS, the default for --only then.
 */
import { spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { reportFile } from './campaign-report-file';
import { PROJECT_ROOT } from './child-processes';

const FILES: Record<string, string | string[]> = {
  chaos: 'test/campaign-conductor-chaos.e2e-spec.ts',
  locks: 'test/campaign-lock-first-use.e2e-spec.ts',
  fs: 'test/campaign-fs-faults.e2e-spec.ts',
  clock: 'test/campaign-clock-skew.e2e-spec.ts',
  'bad-input': 'test/campaign-bad-input.e2e-spec.ts',
  broker: 'test/campaign-broker-faults.e2e-spec.ts',
  hosts: 'test/hosts-campaign.e2e-spec.ts',
  mixed: 'test/campaign-mixed-versions.e2e-spec.ts',
  pieces: 'test/campaign-pieces.e2e-spec.ts',
  'lock-processes': 'test/locking-processes.e2e-spec.ts',
  // Not in npm test (vitest.config.mts, CAMPAIGN_ONLY): 8 lock workers on two ceph-fuse mounts.
  'cephfs-race': 'test/hosts-cephfs-lock-race.e2e-spec.ts',
  // The test beds' own checks beyond what npm test keeps (CAMPAIGN_ONLY: the multi-host bed, a full
  // CephFS, the multi-host bed on each file system): the campaigns would fail without the beds anyway.
  beds: ['test/hosts-bed.e2e-spec.ts', 'test/hosts-shared-fs-more.e2e-spec.ts'],
};
/** The campaigns that put their shared folder on the file system --fs names. */
const FS_CAMPAIGNS = ['chaos', 'locks', 'lock-processes', 'hosts', 'pieces'];
const REPORTS: Record<string, string> = {
  chaos: 'conductor-chaos',
  locks: 'lock-first-use',
  fs: 'fs-faults',
  clock: 'clock-skew',
  'bad-input': 'bad-input',
  broker: 'broker-faults',
  hosts: 'hosts',
  mixed: 'mixed-versions',
  pieces: 'pieces',
};

function usage(message: string): never {
  process.stderr.write(
    `run-campaigns: ${message}\nusage: npm run campaign -- [--seed N] [--size ci|large] [--fs local|cephfs|glusterfs] [--only ${Object.keys(FILES).join(',')}] [--tls]\n`,
  );
  process.exit(2);
}

const args = process.argv.slice(2);
let seed = process.env.CAMPAIGN_SEED ?? String(randomInt(1, 2 ** 31));
let size = process.env.CAMPAIGN_SIZE ?? 'large';
let fs = process.env.CAMPAIGN_FS ?? 'local';
let only: string[] | undefined;
for (let i = 0; i < args.length; i++) {
  const value = args[i + 1];
  if (args[i] === '--seed' && value !== undefined) seed = value;
  else if (args[i] === '--size' && value !== undefined) size = value;
  else if (args[i] === '--only' && value !== undefined) only = value.split(',');
  else if (args[i] === '--fs' && value !== undefined) fs = value;
  else if (args[i] === '--tls') {
    // The across-hosts campaign's conductors speak mutual TLS to the bed's cluster (HOSTS_TLS).
    process.env.HOSTS_TLS = '1';
    continue;
  } else usage(`unknown argument ${JSON.stringify(args[i])}`);
  i++;
}
if (!/^\d+$/.test(seed) || Number(seed) >= 2 ** 32)
  usage(`--seed must be an integer in 0..2^32-1 (got ${JSON.stringify(seed)})`);
if (size !== 'ci' && size !== 'large') usage(`--size must be ci or large (got ${JSON.stringify(size)})`);
if (fs !== 'local' && fs !== 'cephfs' && fs !== 'glusterfs')
  usage(`--fs must be local, cephfs or glusterfs (got ${JSON.stringify(fs)})`);
only ??= fs === 'local' ? Object.keys(FILES).filter((n) => n !== 'lock-processes') : FS_CAMPAIGNS;
for (const name of only) {
  if (!FILES[name]) usage(`unknown campaign ${JSON.stringify(name)}`);
  if (fs !== 'local' && !FS_CAMPAIGNS.includes(name))
    usage(`campaign ${name} runs on the local folder only (--fs takes ${FS_CAMPAIGNS.join(', ')})`);
}

process.stdout.write(
  `campaigns ${only.join(', ')}: size=${size} seed=${seed} fs=${fs}\n(replay: npm run campaign -- --seed ${seed} --size ${size} --fs ${fs} --only ${only.join(',')}${process.env.HOSTS_TLS === '1' ? ' --tls' : ''})\n\n`,
);
const started = Date.now();
// One file at a time (the broker campaign stops RabbitMQ; the others are CPU-bound on a small machine).
const vitest = spawnSync(
  process.execPath,
  [
    path.join(PROJECT_ROOT, 'node_modules', 'vitest', 'vitest.mjs'),
    'run',
    '--no-file-parallelism',
    ...only.flatMap((name) => FILES[name]!),
  ],
  {
    cwd: PROJECT_ROOT,
    stdio: 'inherit',
    env: { ...process.env, CAMPAIGN_SEED: seed, CAMPAIGN_SIZE: size, CAMPAIGN_FS: fs },
  },
);

process.stdout.write(
  `\n=== campaign figures (size ${size}, seed ${seed}, fs ${fs}, ${Math.round((Date.now() - started) / 1000)} s) ===\n`,
);
for (const name of only.filter((n) => REPORTS[n])) {
  const file = reportFile(REPORTS[name]!, size, fs);
  if (!existsSync(file)) {
    process.stdout.write(`${name}: no report written\n`);
    continue;
  }
  const report = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  if (String(report.seed) !== seed) {
    process.stdout.write(
      `${name}: no report for this seed (the last one is for seed ${String(report.seed)})\n`,
    );
    continue;
  }
  // The figures without the long lists (fault log, every connection close...): those stay in the file.
  const brief = JSON.stringify(report, (key, value: unknown) =>
    ['faultLog', 'closes', 'outages', 'params', 'tmp', 'classes', 'bedFaults'].includes(key)
      ? undefined
      : value,
  );
  process.stdout.write(`${name} (${file}):\n${brief}\n\n`);
}
process.exit(vitest.status ?? 1);
