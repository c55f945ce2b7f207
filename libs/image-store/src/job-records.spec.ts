import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { NodeOutcome } from '@app/contracts';
import { JOBS_FOLDER, type JobRecord } from './job-records';
import { useStoreFixture } from './store.fixture';

const record = (overrides: Partial<JobRecord> = {}): JobRecord => ({
  v: 1,
  jobId: 'job-1',
  type: 'precache',
  imageId: 'img',
  nodes: ['node-a', 'node-b'],
  createdAt: '2026-01-01T00:00:00.000Z',
  createdBy: 'spec',
  ...overrides,
});
const outcome = (node: string, kind: NodeOutcome['outcome'], bytes?: number): NodeOutcome => ({
  node,
  outcome: kind,
  ...(bytes === undefined ? {} : { bytes }),
  at: '2026-01-01T00:00:01.000Z',
});

describe('JobRecords', () => {
  const fx = useStoreFixture();

  it('writes a job record once: a second create returns the first, whatever it says', async () => {
    expect((await fx.store.jobs.create(record())).created).toBe(true);
    const again = await fx.store.jobs.create(record({ nodes: ['node-b'] }));
    expect(again).toEqual({ record: record(), created: false });
  });

  it("keeps a node's first outcome: a redelivered copy answered already-present does not replace completed", async () => {
    await fx.store.jobs.create(record());
    expect(await fx.store.jobs.recordOutcome('job-1', outcome('node-a', 'completed', 10))).toBe(true);
    expect(await fx.store.jobs.recordOutcome('job-1', outcome('node-a', 'already-present', 10))).toBe(false);
    const status = await fx.store.jobs.status('job-1');
    expect(status).toMatchObject({ nodesDone: 1, nodesTotal: 2, bytesDone: 10, state: 'running', failed: 0 });
    expect(status!.outcomes.map((o) => o.outcome)).toEqual(['completed']);
    await fx.store.jobs.recordOutcome('job-1', outcome('node-b', 'busy'));
    expect(await fx.store.jobs.status('job-1')).toMatchObject({ state: 'done', failed: 1 });
    // No temporary file is left beside the records.
    const dir = path.join(fx.root, JOBS_FOLDER, 'job-1');
    expect((await fsp.readdir(path.join(dir, 'nodes'))).sort()).toEqual(['node-a.json', 'node-b.json']);
    expect((await fsp.readdir(dir)).sort()).toEqual(['job.json', 'nodes']);
  });

  it('cancels: unknown jobs are not cancelled; request markers are written once', async () => {
    expect(await fx.store.jobs.cancel('nope')).toBe(false);
    await fx.store.jobs.create(record());
    expect(await fx.store.jobs.cancel('job-1')).toBe(true);
    expect(await fx.store.jobs.isCancelled('job-1')).toBe(true);
    expect(await fx.store.jobs.isRequestCancelled('req-1')).toBe(false);
    expect(await fx.store.jobs.cancelRequest('req-1')).toBe(true);
    expect(await fx.store.jobs.cancelRequest('req-1')).toBe(false);
    expect(await fx.store.jobs.isRequestCancelled('req-1')).toBe(true);
    // Not a node: the job folders are invisible to the node listing.
    expect(await fx.store.entries.listNodes()).not.toContain(JOBS_FOLDER);
  });

  it('refuses ids that are not safe names', async () => {
    await expect(fx.store.jobs.read('../x')).rejects.toThrow(/jobId: /);
    await expect(fx.store.jobs.cancelRequest('a/b')).rejects.toThrow(/requestId: /);
  });

  it('removes finished jobs and cancel markers past their keep time, never a running job however old', async () => {
    const DAY = 24 * 60 * 60 * 1000;
    const age = async (file: string, ms: number) => {
      const then = new Date(Date.now() - ms);
      await fsp.utimes(file, then, then);
    };
    const jobsDir = path.join(fx.root, JOBS_FOLDER);
    const backdate = async (jobId: string, ms: number) => {
      const dir = path.join(jobsDir, jobId);
      for (const name of await fsp.readdir(path.join(dir, 'nodes')))
        await age(path.join(dir, 'nodes', name), ms);
      await age(path.join(dir, 'job.json'), ms);
      await age(path.join(dir, 'nodes'), ms);
      await age(dir, ms);
    };
    // Finished and old: goes. Finished and recent: stays. Running and old: stays.
    await fx.store.jobs.create(record({ jobId: 'old-done', nodes: ['node-a'] }));
    await fx.store.jobs.recordOutcome('old-done', outcome('node-a', 'completed'));
    await backdate('old-done', 8 * DAY);
    await fx.store.jobs.create(record({ jobId: 'new-done', nodes: ['node-a'] }));
    await fx.store.jobs.recordOutcome('new-done', outcome('node-a', 'completed'));
    await fx.store.jobs.create(record({ jobId: 'old-running' }));
    await fx.store.jobs.recordOutcome('old-running', outcome('node-a', 'completed'));
    await backdate('old-running', 30 * DAY);
    // A crash between the job's mkdir and its record: an empty folder, old.
    await fsp.mkdir(path.join(jobsDir, 'torn', 'nodes'), { recursive: true });
    await age(path.join(jobsDir, 'torn', 'nodes'), 8 * DAY);
    await age(path.join(jobsDir, 'torn'), 8 * DAY);
    await fx.store.jobs.cancelRequest('old-cancel');
    await fx.store.jobs.cancelRequest('new-cancel');
    await age(path.join(fx.root, '.icc-cancels', 'old-cancel'), 8 * DAY);

    expect(await fx.store.jobs.removeFinished(7 * DAY)).toEqual({ jobs: 2, cancels: 1 });

    expect((await fsp.readdir(jobsDir)).sort()).toEqual(['new-done', 'old-running']);
    expect(await fx.store.jobs.isRequestCancelled('new-cancel')).toBe(true);
    expect(await fx.store.jobs.isRequestCancelled('old-cancel')).toBe(false);
  });
});
