import type { ConsumeMessage } from 'amqplib';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type JobEvent, type JobRequest, type NodeOutcome, cellTopology } from '@app/contracts';
import type { BrokerConnection } from '@app/messaging';
import { CliError, ExitCode } from '../cli/exit-codes';
import type { ProgressBoard } from '../cli/progress-board';
import { JobRefusedError, followJob } from './job-follower';
import { FakeChannel, consumeMessage, settle } from '../../../../test/support/amqp-fakes';

/*
 * followJob's decisions (when it ends, what it shows, how it fails) over a fake broker: the channels of
 * test/support/amqp-fakes.ts, with the server-named queues and bindings JobClient declares.
 */
const topology = cellTopology('spec-cell');
const AT = '2026-01-01T00:00:00.000Z';
const JOB: JobRequest = {
  v: 1,
  type: 'precache',
  jobId: 'job-1',
  imageId: 'img.raw',
  nodes: ['node-a', 'node-b'],
};

/** A channel as JobClient uses it: server-named queues, bindings, sendToQueue. */
class JobsChannel extends FakeChannel {
  readonly bindings: { queue: string; exchange: string; key: string }[] = [];
  private named = 0;

  override async assertQueue(name: string): Promise<{ queue: string }> {
    const queue = name || `amq.gen-${++this.named}`;
    return super.assertQueue(queue);
  }

  async bindQueue(queue: string, exchange: string, key: string): Promise<void> {
    this.bindings.push({ queue, exchange, key });
  }

  sendToQueue(
    queue: string,
    content: Buffer,
    options: Parameters<FakeChannel['publish']>[3],
    callback?: (error: unknown) => void,
  ): boolean {
    return this.publish('', queue, content, options, callback);
  }

  /** The broker delivers `body` on the queue bound with `key` (or the reply queue when none). */
  deliverOn(queue: string, body: object): void {
    const consumer = [...this.consumers.entries()].find(([, c]) => c.queue === queue);
    if (!consumer) throw new Error(`no consumer on ${queue}`);
    this.deliver(consumeMessage(body) as ConsumeMessage, consumer[0]);
  }

  queueBoundTo(key: string): string {
    const binding = this.bindings.find((b) => b.key === key);
    if (!binding) throw new Error(`nothing bound to ${key}`);
    return binding.queue;
  }
}

function fakeBroker() {
  const channel = new JobsChannel(false);
  const confirm = new JobsChannel(true);
  const connection = {
    openChannel: async () => ({ channel, generation: 1 }),
    openConfirmChannel: async () => ({ channel: confirm, generation: 1 }),
  } as unknown as BrokerConnection;
  return { channel, confirm, connection };
}

function recordingBoard() {
  const calls: string[] = [];
  const board = {
    add: (id: string) => calls.push(`add ${id}`),
    update: (id: string, update: { phase: string; bytesDone: number }) =>
      calls.push(`update ${id} ${update.phase} ${update.bytesDone}`),
    finish: (id: string, status: string, complete: boolean) =>
      calls.push(`finish ${id} ${status} ${complete ? 'ok' : 'failed'}`),
    stop: () => calls.push('stop'),
  } as unknown as ProgressBoard;
  return { board, calls };
}

const outcome = (node: string, kind: NodeOutcome['outcome'], bytes?: number): NodeOutcome => ({
  node,
  outcome: kind,
  at: AT,
  ...(bytes === undefined ? {} : { bytes }),
});

function event(type: JobEvent['type'], extra: Partial<JobEvent> = {}): JobEvent {
  return {
    v: 1,
    type,
    jobId: 'job-1',
    jobType: 'precache',
    imageId: 'img.raw',
    nodesTotal: 2,
    nodesDone: 0,
    bytesDone: 0,
    at: AT,
    ...extra,
  };
}

const progress = (node: string, bytesDone: number, requestId = `job-1.${node}`) => ({
  v: 1,
  type: 'progress',
  requestId,
  imageId: 'img.raw',
  source: 'node-c',
  destination: node,
  phase: 'copying',
  bytesDone,
  bytesTotal: 2048,
  conductorId: 'conductor-1',
  at: AT,
});

/** Starts followJob and waits until the job was published (the queues exist by then). */
async function follow(options: { wait: boolean; timeoutMs?: number; signal?: AbortSignal; board?: boolean }) {
  const broker = fakeBroker();
  const { board, calls } = recordingBoard();
  let published = false;
  const result = followJob(broker.connection, topology, JOB, {
    wait: options.wait,
    timeoutMs: options.timeoutMs ?? 60_000,
    board: options.board === false ? undefined : board,
    signal: options.signal,
    onPublished: () => (published = true),
  });
  result.catch(() => undefined);
  for (let i = 0; i < 20 && !published; i++) await settle();
  expect(published).toBe(true);
  const replyQueue = String(broker.confirm.published[0]!.options.replyTo);
  const answer = (body: object) => broker.channel.deliverOn(replyQueue, body);
  return { ...broker, result, calls, replyQueue, answer };
}

describe('followJob', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('without wait: publishes the job to the jobs queue and ends at its acceptance', async () => {
    const t = await follow({ wait: false });
    expect(t.confirm.published).toHaveLength(1);
    const sent = t.confirm.published[0]!;
    expect(sent.routingKey).toBe(topology.jobQueue.name);
    expect(JSON.parse(sent.content.toString())).toEqual(JOB);
    expect(sent.options).toMatchObject({
      messageId: 'job-1',
      correlationId: 'job-1',
      persistent: true,
      mandatory: true,
      contentType: 'application/json',
    });
    // Not following: no queue bound to the job's events.
    expect(t.channel.bindings).toEqual([]);

    t.answer(event('job-accepted', { jobId: 'job-2' })); // another job's answer: not ours
    t.answer(event('job-accepted', { nodes: [] }));
    await expect(t.result).resolves.toMatchObject({ type: 'job-accepted', jobId: 'job-1' });
    expect(t.calls).toEqual(['stop']); // no rows without wait
    expect(t.channel.closed && t.confirm.closed).toBe(true);
  });

  it("with wait: binds the job's events and its copies' progress, shows each node once, ends at the result", async () => {
    const t = await follow({ wait: true });
    expect(t.channel.bindings.map((b) => [b.exchange, b.key])).toEqual([
      [topology.eventsExchange.name, 'job.job-1'],
      [topology.eventsExchange.name, 'progress.#'],
    ]);
    const events = t.channel.queueBoundTo('job.job-1');
    const progressQueue = t.channel.queueBoundTo('progress.#');

    t.answer(event('job-accepted', { nodes: [] }));
    t.channel.deliverOn(progressQueue, progress('node-a', 1024));
    t.channel.deliverOn(progressQueue, progress('node-a', 0, 'job-9.node-a')); // another job's copy
    t.channel.deliverOn(
      events,
      event('job-progress', { nodesDone: 1, outcome: outcome('node-a', 'completed', 2048) }),
    );
    t.channel.deliverOn(progressQueue, progress('node-a', 2048)); // late: the node has its outcome
    t.channel.deliverOn(
      events,
      event('job-progress', { nodesDone: 1, outcome: outcome('node-a', 'completed', 2048) }),
    ); // duplicate
    t.channel.deliverOn(
      events,
      event('job-progress', { nodesDone: 2, outcome: outcome('node-b', 'failed') }),
    );
    await settle();
    let ended = false;
    void t.result.then(() => (ended = true));
    await settle();
    expect(ended, 'job-accepted or job-progress ended a wait').toBe(false);

    const final = event('job-result', {
      nodesDone: 2,
      nodes: [outcome('node-a', 'completed', 2048), outcome('node-b', 'failed')],
    });
    t.channel.deliverOn(events, final);
    await expect(t.result).resolves.toMatchObject({ type: 'job-result', nodesDone: 2 });
    expect(t.calls).toEqual([
      'add node-a',
      'update node-a copying 1024',
      'add node-a',
      'finish node-a completed 2.0 KiB (1/2) ok',
      'add node-b',
      'finish node-b failed (2/2) failed',
      'stop',
    ]);
  });

  it('a refusal is a JobRefusedError (exit code 3) naming the reason', async () => {
    const t = await follow({ wait: true });
    t.answer({
      v: 1,
      type: 'job-refused',
      jobId: 'job-1',
      reason: 'INVALID_REQUEST',
      detail: 'nodes: must list at least one node',
      conductorId: 'conductor-1',
      at: AT,
    });
    const error = await t.result.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(JobRefusedError);
    expect(error).toMatchObject({
      exitCode: ExitCode.FAILED,
      message: 'job job-1 refused: INVALID_REQUEST: nodes: must list at least one node',
    });
  });

  it('a cancel answer is not an answer to a job (exit code 1)', async () => {
    const t = await follow({ wait: false });
    t.answer({
      v: 1,
      type: 'cancel-answer',
      jobId: 'job-1',
      status: 'cancelled',
      detail: 'x',
      conductorId: 'c-1',
      at: AT,
    });
    await expect(t.result).rejects.toMatchObject({
      exitCode: ExitCode.ERROR,
      message: 'unexpected answer to a job',
    });
  });

  it('an unreadable answer is ignored', async () => {
    const t = await follow({ wait: false });
    t.answer({ v: 1, type: 'job-accepted', jobId: 'not a valid id!' });
    t.answer(event('job-accepted'));
    await expect(t.result).resolves.toMatchObject({ type: 'job-accepted' });
  });

  it('no answer in time: TIMED_OUT (exit code 4), and the job goes on', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const t = await follow({ wait: true, timeoutMs: 2_000 });
    await vi.advanceTimersByTimeAsync(1_999);
    let settled = false;
    void t.result.catch(() => (settled = true));
    await settle();
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await expect(t.result).rejects.toMatchObject({
      exitCode: ExitCode.TIMED_OUT,
      message: 'no result for job job-1 within 2 s; it goes on (icc job status job-1)',
    });
    expect(t.channel.closed).toBe(true);
  });

  it('without wait, the timeout message says answer', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const t = await follow({ wait: false, timeoutMs: 500 });
    await vi.advanceTimersByTimeAsync(500);
    await expect(t.result).rejects.toThrow('no answer for job job-1 within 0.5 s');
  });

  it('an abort ends the wait with its reason', async () => {
    const abort = new AbortController();
    const t = await follow({ wait: true, signal: abort.signal });
    const reason = new CliError(ExitCode.ERROR, 'interrupted');
    abort.abort(reason);
    await expect(t.result).rejects.toBe(reason);
  });

  it('a job that comes back unroutable: UNREACHABLE (exit code 5), nothing waited for', async () => {
    const broker = fakeBroker();
    broker.confirm.answer = () => 'return';
    await expect(
      followJob(broker.connection, topology, JOB, { wait: true, timeoutMs: 60_000 }),
    ).rejects.toMatchObject({
      exitCode: ExitCode.UNREACHABLE,
      message: expect.stringContaining(`RabbitMQ has no queue ${topology.jobQueue.name}`),
    });
    expect(broker.channel.closed && broker.confirm.closed).toBe(true);
  });
});
