import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { AdminHttp } from './support/admin-http';
import { runIcc } from './support/agent-cli';
import { until } from './support/async';
import { PROJECT_ROOT } from './support/child-processes';
import { conductorTestbed } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';

const TOKEN = 'conductor-records-test-token-0123';
const VERSION = (
  JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;
const PREVIOUS = (
  JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'release', 'previous-release.json'), 'utf8')) as {
    version: string;
  }
).version;

/** A record as another conductor (of any release) would have written it, beating now unless told. */
async function plantRecord(root: string, id: string, fields: Record<string, unknown> = {}): Promise<string> {
  const file = path.join(root, '.icc-conductors', `${id}.json`);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const now = new Date().toISOString();
  // Written aside and renamed, as conductors write theirs: a reader never sees it half written.
  const aside = path.join(path.dirname(file), `.${id}-${process.hrtime.bigint()}.tmp`);
  await fsp.writeFile(
    aside,
    JSON.stringify({
      v: 1,
      conductorId: id,
      host: 'elsewhere',
      pid: 4242,
      version: PREVIOUS,
      protocols: { wire: 1, cacheLayout: 1, locks: 1, retrySignature: 1, jobRecords: 1 },
      requires: { wire: 1 },
      startedAt: now,
      lastBeatAt: now,
      beat: 3,
      ...fields,
    }),
  );
  await fsp.rename(aside, file);
  return file;
}

describe("conductors' records: who runs in the cell, and refusing to start beside what cannot share it", () => {
  const bed = conductorTestbed(['node-a']);

  it('refuses to start (exit 78, naming them) beside a live conductor older than the previous release or one writing a newer format', async () => {
    const c = bed.cell!;
    await plantRecord(c.root, 'ancient-1', { version: '0.9.0', host: 'old-host' });
    await plantRecord(c.root, 'next-1', { version: '9.0.0', requires: { wire: 1, locks: 2 } });
    await plantRecord(c.root, 'fine-1'); // the previous release: welcome
    await plantRecord(c.root, 'dead-1', { version: '0.1.0', lastBeatAt: '2020-01-01T00:00:00.000Z' });
    const refused = ConductorProcess.start(bed.pool, c.conductorEnv({ CONDUCTOR_ID: 'new-1' }), 60_000);
    const exit = await refused.exited();
    const output = refused.child.output.join('');
    expect(exit.code, output).toBe(78);
    expect(output).toContain(
      `conductor: refusing to start ${VERSION} in this cell: ancient-1 (0.9.0 on old-host, last beat`,
    );
    expect(output).toContain(`is older than ${PREVIOUS}, the oldest release ${VERSION} runs beside`);
    expect(output).toMatch(
      /next-1 \(9\.0\.0 on elsewhere, .*\) writes shared files this release cannot read: locks 2 \(this release speaks 1\)/,
    );
    expect(output).not.toMatch(/fine-1|dead-1/);
    expect(output).not.toContain('conductor started');
  });

  it('beats, is listed by icc conductors and /status with its version, collects dead records and removes its own at a clean stop', async () => {
    const c = bed.cell!;
    await plantRecord(c.root, 'dead-2', { lastBeatAt: '2020-01-01T00:00:00.000Z' });
    const broken = path.join(c.root, '.icc-conductors', 'broken-2.json');
    await fsp.writeFile(broken, '{"v":1,"conductorId":"broken-2"}');
    await fsp.utimes(broken, new Date('2020-01-01'), new Date('2020-01-01'));
    const conductor = await ConductorProcess.start(
      bed.pool,
      c.conductorEnv({
        CONDUCTOR_ID: 'rec-1',
        ADMIN_TOKEN: TOKEN,
        CONDUCTOR_BEAT_MS: '200',
        CONDUCTOR_DEAD_MS: '5000',
      }),
    ).ready();
    const own = path.join(c.root, '.icc-conductors', 'rec-1.json');
    const first = JSON.parse(await fsp.readFile(own, 'utf8')) as {
      beat: number;
      version: string;
      pid: number;
    };
    expect(first).toMatchObject({ version: VERSION, pid: conductor.pid, protocols: { wire: 1, locks: 1 } });
    await until(
      async () =>
        (JSON.parse(await fsp.readFile(own, 'utf8')) as { beat: number }).beat > first.beat + 1 || undefined,
      'two more beats',
      10_000,
    );
    await until(
      async () => ((await fsp.readdir(path.dirname(own))).sort().join() === 'rec-1.json' ? true : undefined),
      'the dead and the broken record collected',
      10_000,
    );
    expect(
      conductor
        .logs()
        .filter((l) => l.msg === 'removed the record of a dead conductor')
        .map((l) => l.conductor)
        .sort(),
    ).toEqual(['broken-2', 'dead-2']);

    // A live conductor of the previous release: it beats (every 500 ms) while it is looked at, or the
    // conductor rightly collects its record once CONDUCTOR_DEAD_MS passed (a loaded machine's two icc runs
    // can take that long).
    await plantRecord(c.root, 'old-3');
    const beating = setInterval(() => void plantRecord(c.root, 'old-3').catch(() => undefined), 500);
    onTestFinished(() => clearInterval(beating));
    const listed = await runIcc(['conductors', '--cache-root', c.root, '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    const cell = JSON.parse(listed.stdout) as {
      conductors: Array<{ conductorId: string; state: string; record: { version: string } }>;
    };
    expect(cell.conductors.map((x) => [x.conductorId, x.state, x.record.version])).toEqual([
      ['old-3', 'live', PREVIOUS],
      ['rec-1', 'live', VERSION],
    ]);
    const text = await runIcc(['conductors', '--cache-root', c.root]);
    expect(text.stdout).toMatch(new RegExp(`rec-1 .*live .*${VERSION.replace(/\./g, '\\.')}`));
    expect(text.stdout).toContain(`2 live (${PREVIOUS}, ${VERSION})`);

    const http = AdminHttp.of(conductor, TOKEN);
    const status = await until(
      async () => {
        const s = await http.json<{
          conductors: { conductors: Array<{ conductorId: string; state: string; version: string }> };
        }>('/status');
        return s.conductors.conductors.length === 2 ? s.conductors : undefined;
      },
      'both conductors on /status',
      10_000,
    );
    expect(status.conductors).toMatchObject([
      { conductorId: 'old-3', state: 'live', version: PREVIOUS },
      { conductorId: 'rec-1', state: 'live', version: VERSION },
    ]);

    conductor.signal('SIGTERM');
    expect((await conductor.exited()).code).toBe(0);
    await expect(fsp.access(own)).rejects.toThrow(/ENOENT/);
  });
});
