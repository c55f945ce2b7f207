import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type CopyRequest, type CopyResult, type ProgressEvent, cellTopology } from '@app/contracts';
import type { BrokerConnection } from '@app/messaging';
import { ExitCode } from '../cli/exit-codes';
import { CopyRequester } from './copy-requester';
import { FakeChannel, consumeMessage, settle } from '../../../../test/support/amqp-fakes';

/*
 * CopyRequester's decisions (what it publishes, which answer is final, what a lost connection does to a
 * wait, sending again after a reconnect) over the real Publisher and ReplyQueue of libs/messaging, on a
 * fake broker built from the channels of test/support/amqp-fakes.ts. Time runs on vitest's fake timers.
 */
const topology = cellTopology('spec-cell');
const REQUEST_QUEUE = topology.requestQueue.name;
const AT = '2026-01-01T00:00:00.000Z';
const REQUEST: CopyRequest = { v: 1, requestId: 'req-1', imageId: 'img.raw', destination: 'node-b' };
const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** A channel with server-named queues and bindings, as a reply queue is declared. */
class NamedChannel extends FakeChannel {
  readonly bindings: { queue: string; exchange: string; key: string }[] = [];

  constructor(
    confirm: boolean,
    private readonly broker: FakeBroker,
  ) {
    super(confirm);
  }

  override async assertQueue(name: string): Promise<{ queue: string }> {
    return super.assertQueue(name || `amq.gen-${++this.broker.named}`);
  }

  async bindQueue(queue: string, exchange: string, key: string): Promise<void> {
    this.bindings.push({ queue, exchange, key });
  }
}

/** What CopyRequester, its Publisher and its ReplyQueues use of a BrokerConnection. */
class FakeBroker {
  state: 'connected' | 'disconnected' = 'connected';
  generation = 1;
  named = 0;
  readonly logger = quiet;
  readonly channels: NamedChannel[] = [];
  /** Queues not on this broker: a mandatory publish to one comes back returned. */
  readonly missing = new Set<string>();
  /** The broker nacks every publish. */
  nack = false;
  private readonly events = new EventEmitter();

  get asConnection(): BrokerConnection {
    return this as unknown as BrokerConnection;
  }

  on(event: string, listener: (payload: unknown) => void): () => void {
    this.events.on(event, listener);
    return () => this.events.off(event, listener);
  }

  current() {
    return this.state === 'connected' ? { model: {}, generation: this.generation } : undefined;
  }

  async openChannel() {
    return { channel: this.open(false), generation: this.generation };
  }

  async openConfirmChannel() {
    return { channel: this.open(true), generation: this.generation };
  }

  async repairTopology(): Promise<void> {}

  /** Every request published so far, in order. */
  get requests() {
    return this.channels
      .filter((c) => c.confirm)
      .flatMap((c) => c.published)
      .filter((p) => p.routingKey === REQUEST_QUEUE);
  }

  /** The conductor answers on `queue` (a reply_to). */
  answer(queue: string, correlationId: string, body: object | Buffer): void {
    const channel = this.channels.find((c) => [...c.consumers.values()].some((x) => x.queue === queue));
    if (!channel) throw new Error(`no consumer on ${queue}`);
    const tag = [...channel.consumers.entries()].find(([, x]) => x.queue === queue)![0];
    channel.deliver(consumeMessage(body, { correlationId }), tag);
  }

  /** An event on the queue bound with `key`. */
  event(key: string, body: object | Buffer): void {
    const channel = this.channels.find((c) => c.bindings.some((b) => b.key === key) && !c.closed);
    if (!channel) throw new Error(`nothing bound to ${key}`);
    channel.deliver(consumeMessage(body));
  }

  lose(): void {
    this.state = 'disconnected';
    for (const channel of this.channels) if (!channel.closed) void channel.close();
    this.events.emit('disconnected', { reason: new Error('socket closed') });
  }

  reconnect(): void {
    this.state = 'connected';
    this.generation += 1;
    this.events.emit('connected', { generation: this.generation, reconnects: this.generation - 1 });
  }

  private open(confirm: boolean): NamedChannel {
    if (this.state !== 'connected') throw new Error('not connected');
    const channel = new NamedChannel(confirm, this);
    channel.answer = (p) => (this.nack ? 'nack' : this.missing.has(p.routingKey) ? 'return' : 'ack');
    this.channels.push(channel);
    return channel;
  }
}

function result(status: CopyResult['status'], extra: Partial<CopyResult> = {}): CopyResult {
  return {
    v: 1,
    type: 'result',
    requestId: 'req-1',
    status,
    attempt: 1,
    durations: { totalMs: 5 },
    conductorId: 'conductor-1',
    at: AT,
    ...(status === 'failed' ? { reason: 'SOURCE_MISSING', retryable: false } : {}),
    ...extra,
  } as CopyResult;
}

async function settled(times = 10): Promise<void> {
  for (let i = 0; i < times; i++) await settle();
}

describe('CopyRequester', () => {
  let requester: CopyRequester | undefined;
  afterEach(async () => {
    vi.useRealTimers();
    await requester?.close();
    requester = undefined;
  });

  async function ready(options: { progress?: (event: ProgressEvent) => void } = {}) {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const broker = new FakeBroker();
    requester = new CopyRequester(broker.asConnection, topology);
    await requester.prepare({
      replies: true,
      ...(options.progress
        ? { progress: { bindingKey: 'progress.node-b', onProgress: options.progress } }
        : {}),
    });
    return { broker, requester };
  }

  const replyTo = (broker: FakeBroker, n = -1) => String(broker.requests.at(n)!.options.replyTo);

  it('refuses to publish before prepare()', async () => {
    const broker = new FakeBroker();
    requester = new CopyRequester(broker.asConnection, topology);
    await expect(requester.publish(REQUEST, 'corr-1')).rejects.toThrow('CopyRequester.prepare() first');
  });

  it('publishes the request as the protocol says: mandatory, persistent, JSON, ids, reply_to', async () => {
    const { broker, requester } = await ready();
    await requester.publish(REQUEST, 'corr-1');
    expect(broker.requests).toHaveLength(1);
    const sent = broker.requests[0]!;
    expect(JSON.parse(sent.content.toString())).toEqual(REQUEST);
    expect(sent.options).toMatchObject({
      contentType: 'application/json',
      persistent: true,
      mandatory: true,
      messageId: 'req-1',
      correlationId: 'corr-1',
      replyTo: 'amq.gen-1',
    });
  });

  it('waits past a retryable failure and an unreadable reply, takes the first final result', async () => {
    const { broker, requester } = await ready();
    await requester.publish(REQUEST, 'corr-1');
    const attempts: CopyResult[] = [];
    const unreadable: string[] = [];
    const waiting = requester.waitForFinal('corr-1', 60_000, {
      onAttemptFailed: (r) => attempts.push(r),
      onUnreadable: (p) => unreadable.push(p),
    });
    const queue = replyTo(broker);
    broker.answer(queue, 'corr-2', result('completed', { requestId: 'req-2' })); // another request's
    broker.answer(queue, 'corr-1', result('failed', { reason: 'LOCK_TIMEOUT', retryable: true }));
    broker.answer(queue, 'corr-1', Buffer.from('not json'));
    broker.answer(queue, 'corr-1', result('completed', { bytes: 10 }));
    broker.answer(queue, 'corr-1', result('already-present')); // a duplicate: the first is the answer
    await expect(waiting).resolves.toMatchObject({ status: 'completed', bytes: 10 });
    expect(attempts.map((r) => r.reason)).toEqual(['LOCK_TIMEOUT']);
    expect(unreadable).toHaveLength(1);
  });

  it('a failed result that is not retryable is final', async () => {
    const { broker, requester } = await ready();
    await requester.publish(REQUEST, 'corr-1');
    const waiting = requester.waitForFinal('corr-1', 60_000);
    broker.answer(replyTo(broker), 'corr-1', result('failed'));
    await expect(waiting).resolves.toMatchObject({ status: 'failed', reason: 'SOURCE_MISSING' });
  });

  it('no final result in time: TIMED_OUT (exit code 4), not earlier', async () => {
    const { requester } = await ready();
    await requester.publish(REQUEST, 'corr-1');
    let failed: unknown;
    const waiting = requester.waitForFinal('corr-1', 2_500).catch((e: unknown) => (failed = e));
    await vi.advanceTimersByTimeAsync(2_499);
    expect(failed).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    await waiting;
    expect(failed).toMatchObject({ exitCode: ExitCode.TIMED_OUT, message: 'no final result within 2.5 s' });
  });

  it('a cancellation ends the wait with its reason', async () => {
    const { requester } = await ready();
    await requester.publish(REQUEST, 'corr-1');
    const interrupt = new Error('Ctrl-C');
    const cancel = Promise.reject(interrupt);
    await expect(requester.waitForFinal('corr-1', 60_000, { cancel })).rejects.toBe(interrupt);
  });

  it('a request that comes back unroutable: UNREACHABLE (exit code 5), no conductor has started', async () => {
    const { broker, requester } = await ready();
    broker.missing.add(REQUEST_QUEUE);
    await expect(requester.publish(REQUEST, 'corr-1')).rejects.toMatchObject({
      exitCode: ExitCode.UNREACHABLE,
      message: `RabbitMQ has no queue ${REQUEST_QUEUE} (the request came back unroutable): no conductor has started for cell 'spec-cell' yet`,
    });
  });

  it('a request the broker does not confirm: UNREACHABLE, could not publish', async () => {
    const { broker, requester } = await ready();
    broker.nack = true;
    await expect(requester.publish(REQUEST, 'corr-1')).rejects.toMatchObject({
      exitCode: ExitCode.UNREACHABLE,
      message: expect.stringMatching(`^could not publish to ${REQUEST_QUEUE}: `),
    });
  });

  it('a lost connection is waited through: on reconnect the request is sent again with the new reply_to', async () => {
    const { broker, requester } = await ready();
    await requester.publish(REQUEST, 'corr-1');
    const journal: string[] = [];
    const waiting = requester.waitForFinal('corr-1', 60_000, {
      onConnectionLost: (reason) => journal.push(`lost: ${reason.message}`),
      onResent: (n) => journal.push(`resent ${n}`),
    });
    broker.lose();
    await settled();
    expect(journal).toEqual(['lost: socket closed']);
    broker.reconnect();
    await settled();
    expect(journal).toEqual(['lost: socket closed', 'resent 1']);
    expect(broker.requests).toHaveLength(2);
    const again = broker.requests[1]!;
    expect(again.options).toMatchObject({ messageId: 'req-1', correlationId: 'corr-1' });
    expect(again.options.replyTo).not.toBe(broker.requests[0]!.options.replyTo);
    broker.answer(String(again.options.replyTo), 'corr-1', result('already-present'));
    await expect(waiting).resolves.toMatchObject({ status: 'already-present' });
  });

  it('only requests still waiting are sent again after a reconnect', async () => {
    const { broker, requester } = await ready();
    await requester.publish(REQUEST, 'corr-1');
    await requester.publish({ ...REQUEST, requestId: 'req-2' }, 'corr-2');
    const first = requester.waitForFinal('corr-1', 60_000);
    broker.answer(replyTo(broker), 'corr-1', result('completed'));
    await first;
    broker.lose();
    broker.reconnect();
    await settled();
    expect(broker.requests.map((r) => r.options.correlationId)).toEqual(['corr-1', 'corr-2', 'corr-2']);
  });

  it('reconnected to a broker without the request queue: sends again with backoff until it appears', async () => {
    const { broker, requester } = await ready();
    await requester.publish(REQUEST, 'corr-1');
    const journal: string[] = [];
    const waiting = requester.waitForFinal('corr-1', 60_000, {
      onResent: (n) => journal.push(`resent ${n}`),
      onResendDeferred: (problem) => journal.push(`deferred: ${problem}`),
    });
    broker.lose();
    broker.missing.add(REQUEST_QUEUE);
    broker.reconnect();
    await settled();
    expect(journal).toEqual([
      `deferred: reconnected, but RabbitMQ has no queue ${REQUEST_QUEUE} there yet (no conductor of cell 'spec-cell' has declared it on that broker)`,
    ]);
    await vi.advanceTimersByTimeAsync(250); // second try, still missing: not reported again
    expect(broker.requests).toHaveLength(3);
    expect(journal).toHaveLength(1);
    broker.missing.delete(REQUEST_QUEUE);
    await vi.advanceTimersByTimeAsync(499);
    expect(broker.requests).toHaveLength(3); // the backoff doubled: 500 ms
    await vi.advanceTimersByTimeAsync(1);
    expect(journal.at(-1)).toBe('resent 1');
    broker.answer(replyTo(broker), 'corr-1', result('completed'));
    await expect(waiting).resolves.toMatchObject({ status: 'completed' });
  });

  it('still disconnected at the deadline: UNREACHABLE, could not reconnect', async () => {
    const { broker, requester } = await ready();
    await requester.publish(REQUEST, 'corr-1');
    const waiting = requester.waitForFinal('corr-1', 3_000);
    waiting.catch(() => undefined);
    broker.lose();
    await vi.advanceTimersByTimeAsync(3_000);
    await expect(waiting).rejects.toMatchObject({
      exitCode: ExitCode.UNREACHABLE,
      message: expect.stringContaining('(socket closed) and could not reconnect within 3 s'),
    });
  });

  it('a reply queue that dies on a live connection ends the wait: UNREACHABLE', async () => {
    const { broker, requester } = await ready();
    await requester.publish(REQUEST, 'corr-1');
    const waiting = requester.waitForFinal('corr-1', 60_000);
    waiting.catch(() => undefined);
    const replyChannel = broker.channels.find((c) => !c.confirm)!;
    replyChannel.closeByBroker(Object.assign(new Error('queue deleted'), { code: 404 }));
    await vi.advanceTimersByTimeAsync(200);
    await expect(waiting).rejects.toMatchObject({
      exitCode: ExitCode.UNREACHABLE,
      message: expect.stringContaining(
        'lost the connection to RabbitMQ while waiting (the reply queue channel was closed by the broker)',
      ),
    });
  });

  it('progress: bound to the events exchange before the reply queue exists; unreadable events skipped', async () => {
    const seen: ProgressEvent[] = [];
    const { broker } = await ready({ progress: (e) => seen.push(e) });
    const [progressChannel, replyChannel] = broker.channels;
    expect(progressChannel!.bindings).toEqual([
      { queue: 'amq.gen-1', exchange: topology.eventsExchange.name, key: 'progress.node-b' },
    ]);
    expect(replyChannel!.declared).toEqual(['queue amq.gen-2']);
    broker.event('progress.node-b', Buffer.from('{"v":1,"type":"progress"}'));
    broker.event('progress.node-b', {
      v: 1,
      type: 'progress',
      requestId: 'req-1',
      imageId: 'img.raw',
      source: 'node-a',
      destination: 'node-b',
      phase: 'copying',
      bytesDone: 5,
      bytesTotal: 10,
      conductorId: 'conductor-1',
      at: AT,
    });
    expect(seen.map((e) => [e.requestId, e.bytesDone])).toEqual([['req-1', 5]]);
  });
});
