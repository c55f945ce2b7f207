import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cellTopology } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { CacheRootGuard } from '../cache-root/cache-root-guard';
import { CancelWatch } from './cancel-watch';
import { JobProgress } from './job-progress';
import { HEADER_KEY_FILE, loadOrCreateHeaderKey } from '../cache-root/header-key';
import type { JobMessageHandlerDeps } from './job-message-handler';
import { JobMessageHandler } from './job-message-handler';
import { FakePublisher, consumeMessage, fakeDelivery } from '../../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../../test/support/recording-logger';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';

describe("JobMessageHandler: CACHE_ROOT not the cell's folder (a dead network mount)", () => {
  let root: string | undefined;
  afterEach(() => removeDir(root));

  it('hands a purge back untouched: no record written, no outcome, nothing answered', async () => {
    root = await makeTempDir('jobs-guard');
    const cacheRoot = new CacheRootGuard({
      cacheRoot: root,
      expectedKey: await loadOrCreateHeaderKey(root),
      log: recordingLogger(),
    });
    await fsp.rm(path.join(root, HEADER_KEY_FILE));
    const publisher = new FakePublisher();
    const log = recordingLogger();
    const handler = new JobMessageHandler({
      store: new ImageStore({ root, fsync: false }),
      publisher: publisher.asPublisher,
      topology: cellTopology('spec-cell'),
      conductorId: 'conductor-1',
      purgeWaitMs: 1_000,
      log,
      shutdown: new AbortController().signal,
      cacheRoot,
    } as unknown as JobMessageHandlerDeps);
    const message = consumeMessage(
      { v: 1, type: 'purge', jobId: 'job-1', imageId: 'img.raw', nodes: ['node-a'] },
      { messageId: 'job-1', contentType: 'application/json' },
    );
    const { delivery } = fakeDelivery(message, log);
    await handler.handle(delivery);

    expect(delivery.outcome).toBe('requeued');
    expect(publisher.sent).toEqual([]);
    // What a purge would have written into the empty folder: its job record.
    expect(await fsp.readdir(root)).toEqual([]);
    expect(log.entries.find((e) => e.msg.startsWith('could not finish'))?.obj).toMatchObject({
      err: expect.stringContaining('is gone'),
    });
  });
});

describe('JobMessageHandler: each kind of message reaches its part and is answered', () => {
  let root: string | undefined;
  afterEach(() => removeDir(root));

  const topology = cellTopology('spec-cell');
  const REPLY = { replyTo: 'amq.gen-reply', correlationId: 'corr-1', contentType: 'application/json' };

  async function handlerInACell() {
    root = await makeTempDir('jobs-dispatch');
    const store = new ImageStore({ root, fsync: false });
    const publisher = new FakePublisher();
    const log = recordingLogger();
    const handler = new JobMessageHandler({
      store,
      progress: new JobProgress({ jobs: store.jobs, publisher: publisher.asPublisher, topology, log }),
      cancels: new CancelWatch(store.jobs),
      publisher: publisher.asPublisher,
      topology,
      conductorId: 'conductor-1',
      purgeWaitMs: 1_000,
      log,
      shutdown: new AbortController().signal,
    } as unknown as JobMessageHandlerDeps);
    const deliver = async (body: object | Buffer) => {
      const { delivery } = fakeDelivery(consumeMessage(body, REPLY), log);
      await handler.handle(delivery);
      return delivery;
    };
    return { store, publisher, deliver };
  }
  const bodies = (publisher: FakePublisher, target: string) => publisher.to(target).map((m) => m.body);

  it('a message it cannot read: refused on job.<jobId> and reply_to, dead-lettered, acked', async () => {
    const { publisher, deliver } = await handlerInACell();
    const delivery = await deliver(Buffer.from('{"v": 1, "type": "precache", "jobId": "job-1", '));

    expect(delivery.outcome).toBe('acked');
    const refusal = { type: 'job-refused', jobId: 'job-1', reason: 'INVALID_REQUEST' };
    expect(publisher.to(topology.eventsExchange.name)).toEqual([
      expect.objectContaining({ routingKey: 'job.job-1', body: expect.objectContaining(refusal) }),
    ]);
    expect(publisher.to('amq.gen-reply')).toEqual([
      expect.objectContaining({
        body: expect.objectContaining(refusal),
        properties: expect.objectContaining({ correlationId: 'corr-1' }),
      }),
    ]);
    expect(publisher.to(topology.deadLetterQueue.name)).toHaveLength(1);
  });

  it('a cancel of an unknown job: not-found on cancel.not-found and reply_to, acked', async () => {
    const { publisher, deliver } = await handlerInACell();
    const delivery = await deliver({ v: 1, type: 'cancel', jobId: 'job-9' });

    expect(delivery.outcome).toBe('acked');
    const answer = {
      type: 'cancel-answer',
      jobId: 'job-9',
      status: 'not-found',
      detail: 'no job job-9 in this cell',
    };
    expect(publisher.to(topology.eventsExchange.name)).toEqual([
      expect.objectContaining({ routingKey: 'cancel.not-found', body: expect.objectContaining(answer) }),
    ]);
    expect(bodies(publisher, 'amq.gen-reply')).toEqual([expect.objectContaining(answer)]);
  });

  it('a pre-cache job: a background copy request per node to start, job-accepted answered, acked', async () => {
    const { store, publisher, deliver } = await handlerInACell();
    await store.markers.registerNode('node-a', 'spec');
    const delivery = await deliver({
      v: 1,
      type: 'precache',
      jobId: 'job-1',
      imageId: 'img.raw',
      nodes: ['node-a', 'node-c'],
    });

    expect(delivery.outcome).toBe('acked');
    expect(bodies(publisher, topology.requestQueue.name)).toEqual([
      {
        v: 1,
        requestId: 'job-1.node-a',
        imageId: 'img.raw',
        destination: 'node-a',
        jobId: 'job-1',
        priority: 'background',
      },
    ]);
    expect(await store.jobs.outcome('job-1', 'node-c')).toMatchObject({ outcome: 'skipped-unknown' });
    expect(bodies(publisher, 'amq.gen-reply')).toEqual([
      expect.objectContaining({ type: 'job-accepted', jobId: 'job-1', nodesTotal: 2, nodesDone: 1 }),
    ]);
  });

  it('a job id reused for another kind of job: refused, the first job untouched', async () => {
    const { store, publisher, deliver } = await handlerInACell();
    await store.markers.registerNode('node-a', 'spec');
    const job = { v: 1, jobId: 'job-1', imageId: 'img.raw', nodes: ['node-a'] };
    await deliver({ ...job, type: 'precache' });
    const delivery = await deliver({ ...job, type: 'purge' });

    expect(delivery.outcome).toBe('acked');
    expect(bodies(publisher, 'amq.gen-reply')).toEqual([
      expect.objectContaining({ type: 'job-accepted' }),
      expect.objectContaining({
        type: 'job-refused',
        jobId: 'job-1',
        reason: 'INVALID_REQUEST',
        detail: 'jobId: job-1 is already the precache job of image img.raw; choose another job id',
      }),
    ]);
    expect(await store.jobs.read('job-1')).toMatchObject({ type: 'precache' });
  });
});
