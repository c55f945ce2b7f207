import { execFile } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRun, runProcess } from './support/agent-cli';
import { PROJECT_ROOT } from './support/child-processes';
import { AMQP_URL, requireRabbitMq } from './support/rabbitmq';
import { makeTempDir, removeDir } from './support/temp-dirs';

const execFileP = promisify(execFile);
const VERSION = (
  JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;
const UNITS = ['icc-conductor.service', 'icc-conductor-live.service', 'icc-conductor-live.timer'];

/*
 * The installable artefact (issue 22): `npm pack` of the built tree (npm test builds before vitest runs;
 * `npm pack` on its own builds first, the prepack script), installed the way docs/deployment.md says, into
 * a temporary prefix, and run from there; and the systemd units of deploy/ checked by systemd-analyze
 * against that installation.
 */
describe('the release tarball', () => {
  let dir: string;
  let tarball: string;
  let files: string[];
  let prefix: string;
  beforeAll(async () => {
    dir = await makeTempDir('artefact');
    // --ignore-scripts: dist/ is built already (the prepack script would build it again).
    const packed = await execFileP('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
      cwd: PROJECT_ROOT,
      maxBuffer: 64 * 1024 * 1024,
    });
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    tarball = path.join(dir, info!.filename);
    files = info!.files.map((f) => f.path);
    prefix = path.join(dir, 'prefix');
    // --prefer-offline: the npm cache filled by `npm ci` serves the dependencies.
    await execFileP(
      'npm',
      [
        'install',
        '-g',
        '--prefix',
        prefix,
        '--prefer-offline',
        '--no-audit',
        '--no-fund',
        '--loglevel=error',
        tarball,
      ],
      { cwd: dir, maxBuffer: 64 * 1024 * 1024 },
    );
  }, 240_000);
  afterAll(async () => {
    if (dir) await removeDir(dir);
  });

  it('holds only what runs: the built programs, docs, schemas, release record and units; no sources, tests or bench', () => {
    for (const needed of [
      'package.json',
      'README.md',
      'CHANGELOG.md',
      'dist/apps/agent/src/main.js',
      'dist/apps/conductor/src/main.js',
      'dist/libs/locking/src/index.js',
      'docs/upgrades.md',
      'docs/deployment.md',
      'docs/copy-request.v1.schema.json',
      'release/previous-release.json',
      ...UNITS.map((u) => `deploy/${u}`),
    ])
      expect(files, needed).toContain(needed);
    const unwanted = files.filter(
      (f) =>
        /^(test|bench|apps|libs|scripts|node_modules|eslint)\//.test(f) ||
        /^dist\/(test|bench)\//.test(f) ||
        /\.(spec|e2e-spec)\.js$/.test(f) ||
        /\.ts$/.test(f),
    );
    expect(unwanted).toEqual([]);
  });

  it('installs with npm install -g --prefix: icc and icc-conductor run from there, and icc demo runs a whole cell', async () => {
    await requireRabbitMq();
    const icc = path.join(prefix, 'bin', 'icc');
    const version = await runProcess(icc, ['--version']);
    expect(version.stdout.trim(), describeRun(['--version'], version)).toBe(VERSION);

    // The conductor's entry: started without its environment it names what is missing and exits 78.
    const conductor = await runProcess(path.join(prefix, 'bin', 'icc-conductor'), [], {
      env: { CELL_ID: '', CACHE_ROOT: '' },
      timeoutMs: 30_000,
    });
    expect(conductor.code, conductor.stderr).toBe(78);
    expect(conductor.stderr).toMatch(
      /^conductor: invalid configuration:\n(.*\n)* {2}CACHE_ROOT: is required/m,
    );

    const args = ['demo', '--big-image-mib', '8'];
    const demo = await runProcess(icc, args, { env: { ...process.env, AMQP_URL }, timeoutMs: 150_000 });
    expect(demo.code, describeRun(args, demo)).toBe(0);
    expect(demo.stdout).toContain('all 15 images verified');
  }, 180_000);

  it('ships systemd units that systemd-analyze verify accepts against the installed programs', async () => {
    const units = path.join(dir, 'units');
    await fsp.mkdir(units);
    for (const unit of UNITS) {
      const text = await fsp.readFile(
        path.join(prefix, 'lib', 'node_modules', 'image-cache-conductor', 'deploy', unit),
        'utf8',
      );
      // The units name the documented prefix, /opt/icc; here the package is installed under a temporary one.
      await fsp.writeFile(path.join(units, unit), text.replaceAll('/opt/icc/', `${prefix}/`));
    }
    const verify = await runProcess('systemd-analyze', ['verify', ...UNITS.map((u) => path.join(units, u))]);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stderr).toBe('');
  });
});
