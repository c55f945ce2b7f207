import { describe, expect, it } from 'vitest';
import { conductorTestbed, takeDeadLetters } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { describeRun, runIcc } from './support/agent-cli';
import { exists } from './support/image-store-fixtures';
import { waitFor } from './support/async';

const IMAGE = 'bad.qcow2';
const many = (n: number) => Array.from({ length: n }, (_, i) => `n${i}`);

describe('jobs: bad input', () => {
  const bed = conductorTestbed(['a', 'b']);

  it('refuses bad jobs naming the field (dead-lettered, nothing created); unknown nodes are skipped, not copied; a forged job copy is refused', async () => {
    const cell = bed.cell!;
    const client = bed.client!;
    await cell.seed('a', IMAGE, 64 * 1024);
    await ConductorProcess.start(bed.pool, cell.conductorEnv({ CONDUCTOR_ID: 'bad-jobs' }), 60_000).ready();
    const job = (fields: Record<string, unknown>) => ({ v: 1, type: 'precache', imageId: IMAGE, ...fields });
    const cases: Array<[string, unknown, RegExp]> = [
      ['empty', job({ jobId: 'j-empty', nodes: [] }), /^nodes: must list at least one node/],
      ['10k', job({ jobId: 'j-10k', nodes: many(10_000) }), /^nodes: must list at most 1000 nodes/],
      ['pct-0', job({ jobId: 'j-p0', all: true, percent: 0 }), /^percent: must be more than 0/],
      ['pct-101', job({ jobId: 'j-p101', all: true, percent: 101 }), /^percent: must be at most 100/],
      [
        'pct-no-all',
        job({ jobId: 'j-pna', nodes: ['a'], percent: 50 }),
        /^percent: is only allowed with all: true/,
      ],
      ['both', job({ jobId: 'j-both', nodes: ['a'], all: true }), /^all: must not be given with nodes/],
      ['none', job({ jobId: 'j-none' }), /^nodes: is required \(or all: true\)/],
      ['dup', job({ jobId: 'j-dup', nodes: ['a', 'a'] }), /^nodes: must not name a node twice/],
      ['dotdot', job({ jobId: 'j-dd', nodes: ['../etc'] }), /^nodes\.0: /],
      ['field', job({ jobId: 'j-field', nodes: ['b'], priority: 9 }), /^priority: unknown field/],
      [
        'type',
        { v: 1, type: 'explode', jobId: 'j-type' },
        /^type: must be "precache" or "purge" or "cancel"/,
      ],
      [
        'cancel-both',
        { v: 1, type: 'cancel', jobId: 'x', requestId: 'y' },
        /^requestId: exactly one of requestId and jobId/,
      ],
      ['version', job({ v: 2, jobId: 'j-v2', nodes: ['b'] }), /^v: unsupported version 2/],
    ];
    const sent = cases.map(([name, body]) => [name, client.send(cell.topology.jobQueue.name, body)] as const);
    for (const [i, [name, correlationId]] of sent.entries()) {
      const answer = await client.finalReply(correlationId, 20_000);
      expect(answer, name).toMatchObject({ type: 'job-refused' });
      expect(String(answer.detail), name).toMatch(cases[i]![2]);
    }
    const dead = await waitFor(
      async () => {
        const letters = await takeDeadLetters(cell.topology);
        return letters.length >= cases.length ? letters : undefined;
      },
      'the refused jobs in the dead-letter queue',
      20_000,
    );
    expect(dead!.map((d) => d.headers['x-icc-reason']).sort()).toEqual(
      cases.map(([name]) => (name === 'version' ? 'UNSUPPORTED_VERSION' : 'INVALID_REQUEST')).sort(),
    );
    // Nothing created for a refused job.
    expect(await cell.store.jobs.list()).toEqual([]);

    // Unknown nodes are part of the job and skipped; the registered one is copied; no folder is created.
    const mixedArgs = [
      'precache',
      IMAGE,
      '--nodes',
      'b,ghost-1,ghost-2',
      '--job-id',
      'j-mixed',
      '--wait',
      '--json',
    ];
    const env = { CELL_ID: cell.cellId, AMQP_URL: cell.conductorEnv().AMQP_URL };
    const mixed = await runIcc(mixedArgs, { env, timeoutMs: 40_000 });
    expect(mixed.code, describeRun(mixedArgs, mixed)).toBe(3);
    const result = JSON.parse(mixed.stdout.trim().split('\n').pop()!) as {
      nodes: { node: string; outcome: string }[];
    };
    expect(Object.fromEntries(result.nodes.map((n) => [n.node, n.outcome]))).toEqual({
      b: 'completed',
      'ghost-1': 'skipped-unknown',
      'ghost-2': 'skipped-unknown',
    });
    expect(await exists(`${cell.root}/ghost-1`)).toBe(false);

    // The same job id for another image is refused; a copy request claiming a job it is not part of too.
    const reused = client.send(cell.topology.jobQueue.name, {
      v: 1,
      type: 'purge',
      jobId: 'j-mixed',
      imageId: IMAGE,
      nodes: ['b'],
    });
    expect(String((await client.finalReply(reused, 20_000)).detail)).toMatch(
      /^jobId: j-mixed is already the precache job/,
    );
    const forged = client.send(cell.topology.requestQueue.name, {
      v: 1,
      requestId: 'j-mixed.a',
      imageId: IMAGE,
      destination: 'a',
      jobId: 'j-mixed',
    });
    expect(await client.finalReply(forged, 20_000)).toMatchObject({
      status: 'failed',
      reason: 'INVALID_REQUEST',
      detail: 'jobId: no pre-cache job j-mixed with node a in this cell',
    });
    expect(await cell.store.jobs.outcome('j-mixed', 'a')).toBeUndefined();

    // The CLI refuses the same inputs before publishing, naming the flag.
    for (const [flags, expected] of [
      [['--nodes', ''], '--nodes: must list at least one node'],
      [['--nodes', many(10_000).join(',')], '--nodes: must list at most 1000 nodes'],
      [['--all', '--percent', '0'], '--percent: must be more than 0'],
      [['--all', '--percent', '150'], '--percent: must be at most 100'],
    ] as const) {
      const cliArgs = ['precache', IMAGE, ...flags];
      const refused = await runIcc(cliArgs, { env });
      expect(refused.code, describeRun(cliArgs, refused)).toBe(2);
      expect(refused.stderr).toContain(expected);
    }
  });
});
