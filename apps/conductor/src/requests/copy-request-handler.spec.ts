import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ReasonError,
  HEADER_ATTEMPT,
  HEADER_FIRST_SEEN,
  HEADER_REASON,
  HEADER_SIGNATURE,
  cellTopology,
  retryQueueFor,
  type ReasonCode,
} from '@app/contracts';
import { PublishNotConfirmedError, PublishUnroutableError, RetryHeaderSigner } from '@app/messaging';
import type { CopyCoordinator } from '../copy/copy-coordinator';
import type { CopyJobResult } from '../copy/copy-job';
import { ConductorMetrics } from '../metrics/conductor-metrics';
import { CopyRequestHandler } from './copy-request-handler';
import { CacheRootGuard } from '../cache-root/cache-root-guard';
import { HEADER_KEY_FILE, loadOrCreateHeaderKey } from '../cache-root/header-key';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import {
  FakePublisher,
  type SentMessage,
  consumeMessage,
  fakeDelivery,
} from '../../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../../test/support/recording-logger';

const topology = cellTopology('spec-cell', { maxAttempts: 3 });
const signer = new RetryHeaderSigner(Buffer.alloc(32, 7), 'spec-cell');
const REQUEST = { v: 1, requestId: 'req-1', imageId: 'img-1', destination: 'node-b' };
const COMPLETED: CopyJobResult = { status: 'completed', source: 'node-a', bytes: 42, sha256: 'f'.repeat(64) };

type Outcome = { result: CopyJobResult; coalesced: boolean };

/** One handler over fakes; `copy` plays the coordinator (what the lock + copy composition returns). */
function handlerWith(
  copy: (signal: AbortSignal) => Promise<Outcome>,
  extra: Partial<ConstructorParameters<typeof CopyRequestHandler>[0]> = {},
) {
  const publisher = new FakePublisher();
  const stats = new ConductorMetrics();
  const log = recordingLogger();
  const shutdown = new AbortController();
  const runs: string[] = [];
  const coordinator = {
    run: (job: { requestId?: string }, requestId: string, _attemptId: string, signal: AbortSignal) => {
      runs.push(requestId);
      return copy(signal);
    },
  } as unknown as CopyCoordinator;
  const handler = new CopyRequestHandler({
    coordinator,
    publisher: publisher.asPublisher,
    topology,
    stats,
    conductorId: 'conductor-1',
    log,
    shutdown: shutdown.signal,
    signer,
    ...extra,
  });
  return { handler, publisher, stats, log, shutdown, runs };
}

function request(
  body: object | Buffer = REQUEST,
  properties: Parameters<typeof consumeMessage>[1] = {},
): ReturnType<typeof consumeMessage> {
  return consumeMessage(body, {
    messageId: 'req-1',
    replyTo: 'amq.gen-reply',
    correlationId: 'corr-1',
    contentType: 'application/json',
    ...properties,
  });
}

const fails = (code: ReasonCode) => () => Promise.reject(new ReasonError(code, `${code} in the spec`));
const body = (m: SentMessage) => m.body as Record<string, unknown>;
const headers = (m: SentMessage) => m.properties.headers ?? {};

/** A message as a retry copy of attempt `attempt` carries it, signed by this cell. */
function signedRetry(attempt: number) {
  const firstSeen = '2026-01-01T00:00:00.000Z';
  const unsigned = request();
  const signature = signer.sign(unsigned, attempt, firstSeen);
  return request(REQUEST, {
    headers: { [HEADER_ATTEMPT]: attempt, [HEADER_FIRST_SEEN]: firstSeen, [HEADER_SIGNATURE]: signature },
  });
}

afterEach(() => {
  vi.useRealTimers();
});

describe('CopyRequestHandler: a copy that succeeds', () => {
  it('answers on the events exchange and to reply_to, then acks', async () => {
    const { handler, publisher, stats, log } = handlerWith(async () => ({
      result: COMPLETED,
      coalesced: false,
    }));
    const { delivery, channel } = fakeDelivery(request(), log);
    await handler.handle(delivery);

    expect(delivery.outcome).toBe('acked');
    expect(channel.acks).toHaveLength(1);
    const events = publisher.to(topology.eventsExchange.name);
    expect(events.map((m) => m.routingKey)).toEqual(['result.completed']);
    expect(body(events[0]!)).toMatchObject({
      requestId: 'req-1',
      status: 'completed',
      bytes: 42,
      attempt: 1,
    });
    const replies = publisher.to('amq.gen-reply');
    expect(replies).toHaveLength(1);
    expect(replies[0]!.properties).toMatchObject({ correlationId: 'corr-1', mandatory: true });
    expect(publisher.to(topology.deadLetterQueue.name)).toEqual([]);
    expect(stats.totals).toMatchObject({ completed: 1, coalesced: 0, deadLettered: 0, retried: 0 });
  });

  it('counts a request that joined a copy already running as coalesced', async () => {
    const { handler, stats, log } = handlerWith(async () => ({
      result: { ...COMPLETED, status: 'already-present' },
      coalesced: true,
    }));
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);
    expect(delivery.outcome).toBe('acked');
    expect(stats.totals).toMatchObject({ alreadyPresent: 1, coalesced: 1 });
  });

  it('still acks when the reply queue is gone (the result is on the events exchange)', async () => {
    const { handler, publisher, log } = handlerWith(async () => ({ result: COMPLETED, coalesced: false }));
    publisher.refuse = (m) =>
      m.routingKey === 'amq.gen-reply'
        ? new PublishUnroutableError('returned', { returned: true })
        : undefined;
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);
    expect(delivery.outcome).toBe('acked');
    expect(log.entries.map((e) => e.msg)).toContain('reply not delivered: the reply queue is gone');
  });

  it('sends a reply again once when its channel failed for another reason', async () => {
    const { handler, publisher, log } = handlerWith(async () => ({ result: COMPLETED, coalesced: false }));
    let refused = 0;
    publisher.refuse = (m) =>
      m.routingKey === 'amq.gen-reply' && refused++ === 0
        ? new PublishUnroutableError('channel closed by a 404', { returned: false })
        : undefined;
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);
    expect(refused).toBe(2);
    expect(publisher.to('amq.gen-reply')).toHaveLength(1);
    expect(delivery.outcome).toBe('acked');
  });
});

describe('CopyRequestHandler: permanent failures are answered and dead-lettered', () => {
  it.each<ReasonCode>(['SOURCE_MISSING', 'UNKNOWN_NODE', 'CHECKSUM_MISMATCH', 'SIZE_MISMATCH'])(
    '%s: failed answer (not retryable), dead letter with the reason, ack',
    async (code) => {
      const { handler, publisher, stats, log } = handlerWith(fails(code));
      const { delivery } = fakeDelivery(request(), log);
      await handler.handle(delivery);

      expect(delivery.outcome).toBe('acked');
      const dead = publisher.to(topology.deadLetterQueue.name);
      expect(dead).toHaveLength(1);
      expect(headers(dead[0]!)).toMatchObject({ [HEADER_REASON]: code, [HEADER_ATTEMPT]: 1 });
      expect(dead[0]!.properties.mandatory).toBe(true);
      const [answer] = publisher.to(topology.eventsExchange.name);
      expect(answer!.routingKey).toBe('result.failed');
      expect(body(answer!)).toMatchObject({ status: 'failed', reason: code, retryable: false });
      expect(publisher.sent.filter((m) => m.routingKey.includes('retry'))).toEqual([]);
      expect(stats.totals.deadLettered).toBe(1);
      expect(stats.totals.failedByReason[code]).toBe(1);
    },
  );

  it.each([
    ['a body that is not JSON', request(Buffer.from('{"v":1,')), 'body: not valid JSON'],
    ['a content type that is not JSON', request(REQUEST, { contentType: 'text/plain' }), 'content_type'],
    [
      'a reply_to among the cells own queues',
      request(REQUEST, { replyTo: 'icc.other.requests' }),
      'reply_to',
    ],
    ['a deadline that passed', request({ ...REQUEST, deadline: '2020-01-01T00:00:00Z' }), 'deadline'],
  ])('%s: never copied, dead-lettered with the field named', async (_what, message, field) => {
    const { handler, publisher, log, runs } = handlerWith(async () => ({
      result: COMPLETED,
      coalesced: false,
    }));
    const { delivery } = fakeDelivery(message, log);
    await handler.handle(delivery);
    expect(runs).toEqual([]);
    expect(delivery.outcome).toBe('acked');
    const [dead] = publisher.to(topology.deadLetterQueue.name);
    expect(String(headers(dead!)['x-icc-detail'])).toContain(field);
    expect(['INVALID_REQUEST', 'DEADLINE_EXCEEDED']).toContain(headers(dead!)[HEADER_REASON]);
  });

  it('sends no reply into a refused reply_to, only the event', async () => {
    const { handler, publisher, log } = handlerWith(async () => ({ result: COMPLETED, coalesced: false }));
    const { delivery } = fakeDelivery(request(REQUEST, { replyTo: 'icc.other.requests' }), log);
    await handler.handle(delivery);
    expect(publisher.to('icc.other.requests')).toEqual([]);
    expect(publisher.to(topology.eventsExchange.name)).toHaveLength(1);
  });
});

describe('CopyRequestHandler: retryable failures', () => {
  it.each<ReasonCode>(['LOCK_TIMEOUT', 'LOCK_LOST', 'IO_ERROR', 'NO_SPACE'])(
    '%s on attempt 1: a signed copy for attempt 2 in the first retry tier, a non-final answer, ack',
    async (code) => {
      const { handler, publisher, stats, log } = handlerWith(fails(code));
      const message = request();
      const { delivery } = fakeDelivery(message, log);
      await handler.handle(delivery);

      expect(delivery.outcome).toBe('acked');
      const retries = publisher.to(retryQueueFor(topology, 1).name);
      expect(retries).toHaveLength(1);
      const h = headers(retries[0]!);
      expect(h).toMatchObject({ [HEADER_ATTEMPT]: 2, [HEADER_REASON]: code });
      // The next conductor believes the attempt number only because it is signed.
      expect(
        signer.read({ content: message.content, properties: { ...message.properties, headers: h } }, 3),
      ).toMatchObject({ attempt: 2, ignored: [] });
      expect(body(publisher.to(topology.eventsExchange.name)[0]!)).toMatchObject({
        status: 'failed',
        reason: code,
        retryable: true,
      });
      expect(publisher.to(topology.deadLetterQueue.name)).toEqual([]);
      expect(stats.totals.retried).toBe(1);
    },
  );

  it('an unexpected error counts as INTERNAL and is retried', async () => {
    const { handler, publisher, log } = handlerWith(() => Promise.reject(new TypeError('a bug')));
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);
    const [retry] = publisher.to(retryQueueFor(topology, 1).name);
    expect(headers(retry!)[HEADER_REASON]).toBe('INTERNAL');
    expect(log.entries.some((e) => e.level === 'error' && e.msg === 'unexpected error in a copy')).toBe(true);
  });

  it('on the last attempt: RETRIES_EXHAUSTED, dead-lettered with the last reason in the detail', async () => {
    const { handler, publisher, log } = handlerWith(fails('LOCK_TIMEOUT'));
    const { delivery } = fakeDelivery(signedRetry(topology.maxAttempts), log);
    await handler.handle(delivery);
    expect(publisher.sent.filter((m) => m.routingKey.includes('retry'))).toEqual([]);
    const [dead] = publisher.to(topology.deadLetterQueue.name);
    expect(headers(dead!)).toMatchObject({ [HEADER_REASON]: 'RETRIES_EXHAUSTED', [HEADER_ATTEMPT]: 3 });
    expect(String(headers(dead!)['x-icc-detail'])).toContain('LOCK_TIMEOUT');
    expect(delivery.outcome).toBe('acked');
  });

  it('an attempt header nobody signed counts as attempt 1', async () => {
    const { handler, publisher, stats, log } = handlerWith(fails('LOCK_TIMEOUT'));
    const forged = request(REQUEST, { headers: { [HEADER_ATTEMPT]: 3 } });
    const { delivery } = fakeDelivery(forged, log);
    await handler.handle(delivery);
    expect(publisher.to(topology.deadLetterQueue.name)).toEqual([]);
    expect(headers(publisher.to(retryQueueFor(topology, 1).name)[0]!)[HEADER_ATTEMPT]).toBe(2);
    expect(stats.totals.untrustedHeaders).toBe(1);
  });
});

describe('CopyRequestHandler: nothing is acked before its forward is confirmed', () => {
  it.each([
    ['the retry copy', (m: SentMessage) => m.routingKey === retryQueueFor(topology, 1).name, 'LOCK_TIMEOUT'],
    ['the dead letter', (m: SentMessage) => m.routingKey === topology.deadLetterQueue.name, 'SOURCE_MISSING'],
    ['the result event', (m: SentMessage) => m.exchange === topology.eventsExchange.name, 'SOURCE_MISSING'],
  ] as const)('%s not confirmed: the request is handed back, not acked', async (_what, refused, code) => {
    vi.useFakeTimers();
    const { handler, publisher, stats, log } = handlerWith(fails(code));
    publisher.refuse = (m) => (refused(m) ? new PublishNotConfirmedError('nacked') : undefined);
    const { delivery, channel } = fakeDelivery(request(), log);
    const handled = handler.handle(delivery);
    // The pause before handing back keeps a refusing broker from becoming a hot loop.
    await vi.advanceTimersByTimeAsync(999);
    expect(delivery.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await handled;
    expect(delivery.outcome).toBe('requeued');
    expect(channel.acks).toEqual([]);
    expect(channel.nacks.map((n) => n.requeue)).toEqual([true]);
    expect(stats.totals.handedBack).toBe(1);
  });

  it('a reply whose channel fails twice hands the request back', async () => {
    vi.useFakeTimers();
    const { handler, publisher, log } = handlerWith(async () => ({ result: COMPLETED, coalesced: false }));
    publisher.refuse = (m) =>
      m.routingKey === 'amq.gen-reply' ? new PublishUnroutableError('404', { returned: false }) : undefined;
    const { delivery } = fakeDelivery(request(), log);
    const handled = handler.handle(delivery);
    await vi.advanceTimersByTimeAsync(1000);
    await handled;
    expect(delivery.outcome).toBe('requeued');
  });
});

describe('CopyRequestHandler: shutdown', () => {
  it('a copy aborted by the shutdown goes back to the queue, unanswered', async () => {
    const { handler, publisher, stats, log, shutdown } = handlerWith(
      (signal) =>
        new Promise((_resolve, reject) =>
          signal.addEventListener('abort', () => reject(new ReasonError('SHUTTING_DOWN', 'stopping'))),
        ),
    );
    const { delivery } = fakeDelivery(request(), log);
    const handled = handler.handle(delivery);
    shutdown.abort();
    await handled;
    expect(delivery.outcome).toBe('requeued');
    expect(publisher.sent).toEqual([]);
    expect(stats.totals).toMatchObject({ handedBack: 1, failed: 0, retried: 0 });
  });

  it('hands a request back at once, without the pause, when the broker fails during shutdown', async () => {
    const { handler, publisher, log, shutdown } = handlerWith(async () => ({
      result: COMPLETED,
      coalesced: false,
    }));
    vi.useFakeTimers();
    publisher.refuse = () => new PublishNotConfirmedError('channel closed');
    shutdown.abort();
    const { delivery } = fakeDelivery(request(), log);
    void handler.handle(delivery);
    await vi.advanceTimersByTimeAsync(0);
    expect(delivery.outcome).toBe('requeued');
  });
});

describe("CopyRequestHandler: CACHE_ROOT not the cell's folder (a dead network mount)", () => {
  let root: string | undefined;
  afterEach(() => removeDir(root));

  async function guarded(code: ReasonCode, mountDead: boolean) {
    root = await makeTempDir('handler-guard');
    const cacheRoot = new CacheRootGuard({
      cacheRoot: root,
      expectedKey: await loadOrCreateHeaderKey(root),
      log: recordingLogger(),
    });
    if (mountDead) await fsp.rm(path.join(root, HEADER_KEY_FILE));
    return handlerWith(fails(code), { cacheRoot });
  }

  it.each<ReasonCode>(['UNKNOWN_NODE', 'SOURCE_MISSING', 'IO_ERROR'])(
    '%s seen on it is no answer: CACHE_UNAVAILABLE, retried without using up an attempt, not dead-lettered',
    async (code) => {
      const { handler, publisher, log } = await guarded(code, true);
      const message = signedRetry(topology.maxAttempts);
      const { delivery } = fakeDelivery(message, log);
      await handler.handle(delivery);

      expect(delivery.outcome).toBe('acked');
      expect(publisher.to(topology.deadLetterQueue.name)).toEqual([]);
      const retries = publisher.sent.filter((m) => m.routingKey.includes('retry'));
      expect(retries).toHaveLength(1);
      const h = headers(retries[0]!);
      expect(h).toMatchObject({
        [HEADER_ATTEMPT]: topology.maxAttempts,
        [HEADER_REASON]: 'CACHE_UNAVAILABLE',
      });
      expect(String(h['x-icc-detail'])).toContain(code);
      expect(
        signer.read({ content: message.content, properties: { ...message.properties, headers: h } }, 3),
      ).toMatchObject({
        attempt: topology.maxAttempts,
        ignored: [],
      });
      const events = publisher.to(topology.eventsExchange.name).map(body);
      expect(events).toEqual([expect.objectContaining({ reason: 'CACHE_UNAVAILABLE', retryable: true })]);
    },
  );

  it('on the folder it started on, UNKNOWN_NODE stays a final answer', async () => {
    const { handler, publisher, log } = await guarded('UNKNOWN_NODE', false);
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);
    expect(headers(publisher.to(topology.deadLetterQueue.name)[0]!)[HEADER_REASON]).toBe('UNKNOWN_NODE');
  });
});

/**
 * A cut link takes the broker and the mount together: a copy fails (its lock lost, or I/O on the mount)
 * while the conductor has not yet noticed that its connection is gone. That work must take the same path
 * as work whose channel was already known dead: dropped quietly, no retry copy, no answer.
 */
describe('CopyRequestHandler: a failure while the link is down, before the lost connection is noticed', () => {
  const DROPPED =
    'the delivery died with its channel: work dropped quietly (no answer, no retry); the broker redelivers it';

  it('the connection is noticed lost during the folder check: no retry copy, no answer', async () => {
    const link: { lease?: { open: boolean } } = {};
    const cacheRoot = {
      check: async () => {
        link.lease!.open = false; // the AMQP heartbeat times out meanwhile
        return { available: true as const };
      },
    };
    const { handler, publisher, log } = handlerWith(fails('LOCK_LOST'), { cacheRoot: cacheRoot as never });
    const fake = fakeDelivery(request(), log);
    link.lease = fake.lease;
    await handler.handle(fake.delivery);

    expect(publisher.sent).toEqual([]);
    expect(fake.delivery.outcome).toBe('lost');
    expect(log.entries.filter((e) => e.msg === DROPPED).map((e) => e.obj)).toEqual([
      expect.objectContaining({ requestId: 'req-1', dropped: 'failure LOCK_LOST' }),
    ]);
  });

  it('the retry copy is not confirmed because the connection died under it: dropped, not handed back', async () => {
    const { handler, publisher, log } = handlerWith(fails('LOCK_LOST'));
    const fake = fakeDelivery(request(), log);
    publisher.refuse = () => {
      fake.lease.open = false;
      return new PublishNotConfirmedError('connection closed: heartbeat timeout');
    };
    await handler.handle(fake.delivery);

    expect(fake.delivery.outcome).toBe('lost');
    expect(log.entries.map((e) => e.msg)).not.toContain('could not answer a request; handing it back');
    expect(log.entries.filter((e) => e.msg === DROPPED)).toHaveLength(1);
  });
});

describe("CopyRequestHandler: a request id's first final answer stands", () => {
  const FIRST = {
    v: 1 as const,
    type: 'result' as const,
    requestId: 'req-1',
    status: 'completed' as const,
    attempt: 1,
    durations: { totalMs: 7 },
    conductorId: 'conductor-0',
    at: '2026-01-01T00:00:00.000Z',
  };

  it('a re-send is answered with the recorded answer, without copying', async () => {
    const answers = { read: vi.fn(async () => FIRST), record: vi.fn() };
    const { handler, publisher, log, runs } = handlerWith(fails('SOURCE_MISSING'), { answers });
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);

    expect(runs).toEqual([]);
    expect(answers.record).not.toHaveBeenCalled();
    expect(delivery.outcome).toBe('acked');
    expect(publisher.to(topology.eventsExchange.name).map(body)).toEqual([FIRST]);
    expect(publisher.to('amq.gen-reply').map(body)).toEqual([FIRST]);
  });

  it('a duplicate finishing after the first final answer sends the first one, not its own', async () => {
    const answers = {
      read: vi.fn(async () => undefined),
      record: vi.fn(async () => ({ answer: FIRST, first: false })),
    };
    const { handler, publisher, log } = handlerWith(
      async () => ({ result: { ...COMPLETED, status: 'already-present' }, coalesced: false }),
      { answers },
    );
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);

    expect(answers.record).toHaveBeenCalledWith(expect.objectContaining({ status: 'already-present' }));
    expect(publisher.to(topology.eventsExchange.name).map(body)).toEqual([FIRST]);
    expect(delivery.outcome).toBe('acked');
  });

  it('a final failure is recorded before it is sent; a record that cannot be written does not hold it back', async () => {
    const answers = {
      read: vi.fn(async () => undefined),
      record: vi.fn(async () => Promise.reject(new Error('EIO'))),
    };
    const { handler, publisher, log } = handlerWith(fails('SOURCE_MISSING'), { answers });
    const { delivery } = fakeDelivery(request(), log);
    await handler.handle(delivery);

    expect(answers.record).toHaveBeenCalledWith(expect.objectContaining({ reason: 'SOURCE_MISSING' }));
    expect(publisher.to(topology.eventsExchange.name).map(body)).toEqual([
      expect.objectContaining({ status: 'failed', reason: 'SOURCE_MISSING', retryable: false }),
    ]);
    expect(log.entries.map((e) => e.msg)).toContain(
      'could not record the final answer: answered without a record',
    );
  });
});
