import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PublishUnroutableError } from '@app/messaging';
import { type JobEvent, type NodeOutcome, cellTopology } from '@app/contracts';
import { ImageStore, JOBS_FOLDER, type JobRecord } from '@app/image-store';
import { JobProgress } from './job-progress';
import { FakePublisher } from '../../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../../test/support/recording-logger';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';

const topology = cellTopology('spec-cell');
const EVENTS = topology.eventsExchange.name;
const AT = '2026-01-01T00:00:00.000Z';

const record = (nodes: string[]): JobRecord => ({
  v: 1,
  jobId: 'job-1',
  type: 'precache',
  imageId: 'img.raw',
  nodes,
  createdAt: AT,
  createdBy: 'spec',
});
const outcome = (node: string, kind: NodeOutcome['outcome'], bytes?: number): NodeOutcome => ({
  node,
  outcome: kind,
  at: AT,
  ...(bytes === undefined ? {} : { bytes }),
});

describe('JobProgress: events computed from the records', () => {
  let root: string | undefined;
  afterEach(() => removeDir(root));

  async function progressOver(nodes: string[]) {
    root = await makeTempDir('job-progress');
    await fsp.mkdir(path.join(root, 'node-1')); // a cell's CACHE_ROOT is never empty (makeCellFolder)
    const store = new ImageStore({ root, fsync: false });
    await store.jobs.create(record(nodes));
    const publisher = new FakePublisher();
    const log = recordingLogger();
    const progress = new JobProgress({ jobs: store.jobs, publisher: publisher.asPublisher, topology, log });
    const events = () => publisher.sent.map((m) => m.body as JobEvent);
    return { store, publisher, log, progress, events };
  }

  it('records the first node of two and publishes one job-progress with the counts, no result yet', async () => {
    const { store, publisher, progress, events, log } = await progressOver(['node-a', 'node-b']);
    await progress.nodeFinished('job-1', outcome('node-a', 'completed', 100));

    expect(await store.jobs.outcome('job-1', 'node-a')).toMatchObject({ outcome: 'completed', bytes: 100 });
    expect(events().map((e) => e.type)).toEqual(['job-progress']);
    expect(events()[0]).toMatchObject({
      v: 1,
      jobId: 'job-1',
      jobType: 'precache',
      imageId: 'img.raw',
      nodesTotal: 2,
      nodesDone: 1,
      bytesDone: 100,
      node: 'node-a',
      outcome: { node: 'node-a', outcome: 'completed' },
    });
    expect(events()[0]).not.toHaveProperty('cancelled');
    // On the events exchange, routed by job, not persistent, message id = job id.
    expect(publisher.sent[0]).toMatchObject({
      exchange: EVENTS,
      routingKey: 'job.job-1',
      properties: { messageId: 'job-1', persistent: false },
    });
    expect(log.entries.find((e) => e.msg === 'job node finished')?.obj).toMatchObject({
      recorded: true,
      done: 1,
      total: 2,
    });
  });

  it('the last node publishes job-progress then job-result listing every node', async () => {
    const { progress, events } = await progressOver(['node-a', 'node-b']);
    await progress.nodeFinished('job-1', outcome('node-a', 'completed', 100));
    await progress.nodeFinished('job-1', outcome('node-b', 'failed'));

    expect(events().map((e) => e.type)).toEqual(['job-progress', 'job-progress', 'job-result']);
    const result = events()[2]!;
    expect(result).toMatchObject({ nodesDone: 2, nodesTotal: 2, bytesDone: 100 });
    expect(result.nodes?.map((n) => [n.node, n.outcome])).toEqual([
      ['node-a', 'completed'],
      ['node-b', 'failed'],
    ]);
  });

  it('a second outcome for a node keeps the first (first writer wins) and publishes the recorded one', async () => {
    const { store, progress, events, log } = await progressOver(['node-a', 'node-b']);
    await progress.nodeFinished('job-1', outcome('node-a', 'completed', 100));
    await progress.nodeFinished('job-1', outcome('node-a', 'already-present', 100));

    expect(await store.jobs.outcome('job-1', 'node-a')).toMatchObject({ outcome: 'completed' });
    expect(events().map((e) => e.type)).toEqual(['job-progress', 'job-progress']);
    // The duplicate event tells what is on record, not what the redelivered copy found.
    expect(events()[1]).toMatchObject({ nodesDone: 1, outcome: { outcome: 'completed' } });
    expect(log.entries.filter((e) => e.msg === 'job node finished').at(-1)?.obj).toMatchObject({
      recorded: false,
      outcome: 'completed',
    });
  });

  it('a redelivery after the job is done publishes its result again (events may be duplicated)', async () => {
    const { progress, events } = await progressOver(['node-a']);
    await progress.nodeFinished('job-1', outcome('node-a', 'completed', 7));
    await progress.nodeFinished('job-1', outcome('node-a', 'completed', 7));
    expect(events().map((e) => e.type)).toEqual(['job-progress', 'job-result', 'job-progress', 'job-result']);
  });

  it('publishes nothing for a job whose record is missing (its folder without job.json)', async () => {
    const { publisher, progress } = await progressOver(['node-a']);
    await fsp.mkdir(path.join(root!, JOBS_FOLDER, 'job-2', 'nodes'), { recursive: true });
    await progress.nodeFinished('job-2', outcome('node-a', 'completed'));
    expect(publisher.sent).toEqual([]);
  });

  it('a cancelled job says so in its events', async () => {
    const { store, progress, events } = await progressOver(['node-a', 'node-b']);
    await store.jobs.cancel('job-1');
    await progress.nodeFinished('job-1', outcome('node-a', 'cancelled'));
    expect(events()[0]).toMatchObject({ cancelled: true, outcome: { outcome: 'cancelled' } });
  });

  it('publishAccepted: job-accepted with the nodes, and the result too when already done', async () => {
    const { store, progress, events } = await progressOver(['node-a']);
    const running = (await store.jobs.status('job-1'))!;
    await progress.publishAccepted(running);
    expect(events().map((e) => e.type)).toEqual(['job-accepted']);
    expect(events()[0]).toMatchObject({ nodes: [], nodesDone: 0, nodesTotal: 1 });

    await store.jobs.recordOutcome('job-1', outcome('node-a', 'absent'));
    await progress.publishAccepted((await store.jobs.status('job-1'))!);
    expect(events().map((e) => e.type)).toEqual(['job-accepted', 'job-accepted', 'job-result']);
  });

  it('an unroutable event repairs the topology and is published again', async () => {
    const { publisher, progress, events } = await progressOver(['node-a', 'node-b']);
    let refused = 0;
    publisher.refuse = () =>
      refused++ === 0 ? new PublishUnroutableError('no route', { returned: true }) : undefined;
    await progress.nodeFinished('job-1', outcome('node-a', 'completed'));
    expect(publisher.repairs).toHaveLength(1);
    expect(events().map((e) => e.type)).toEqual(['job-progress']);
  });
});
