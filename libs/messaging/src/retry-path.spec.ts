import type { Message } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { cellTopology } from '@app/contracts';
import type { Publisher, PublishProperties } from './publisher';
import { PublishUnroutableError, notFoundName } from './errors';
import { RetryHeaderSigner } from './retry-signature';
import { publishRouted, publishToDeadLetter, publishToRetry, republishProperties } from './retry-path';

function message(headers: Record<string, unknown>): Message {
  return {
    content: Buffer.from('{"v":1}'),
    fields: { deliveryTag: 7, redelivered: true, exchange: '', routingKey: 'icc.c.requests' },
    properties: {
      contentType: 'application/json',
      contentEncoding: undefined,
      headers,
      deliveryMode: 2,
      priority: 3,
      correlationId: 'c-1',
      replyTo: 'reply-q',
      expiration: '60000',
      messageId: 'r-1',
      timestamp: 1700000000,
      type: undefined,
      userId: undefined,
      appId: 'agent',
      clusterId: undefined,
    },
  };
}

/** Records publishes; the first `unroutable` of them fail as a basic.return would. */
function recordingPublisher(
  unroutable = 0,
  failure = (routingKey: string) => new PublishUnroutableError(`returned: ${routingKey}`, { returned: true }),
) {
  const sent: { queue: string; body: Buffer; properties: PublishProperties }[] = [];
  const repairs: string[] = [];
  const missing: (string | undefined)[] = [];
  let failing = unroutable;
  const publisher = {
    publish: async (exchange: string, routingKey: string, body: Buffer, properties: PublishProperties) => {
      if (failing-- > 0) throw failure(routingKey);
      sent.push({ queue: routingKey, body, properties });
    },
    repairTopology: async (cause: string, name?: string) => {
      repairs.push(cause);
      missing.push(name);
    },
  } as unknown as Publisher;
  return { publisher, sent, repairs, missing };
}

describe('republishProperties', () => {
  it('keeps identity and custom headers, drops broker bookkeeping and the per-message TTL', () => {
    const props = republishProperties(
      message({
        custom: 1,
        'x-death': [{}],
        'x-delivery-count': 4,
        'x-first-death-reason': 'expired',
        'x-icc-publish-id': '3.7',
      }),
      { 'x-icc-attempt': 2 },
    );
    expect(props).toEqual({
      messageId: 'r-1',
      correlationId: 'c-1',
      replyTo: 'reply-q',
      contentType: 'application/json',
      contentEncoding: undefined,
      type: undefined,
      appId: 'agent',
      timestamp: 1700000000,
      persistent: true,
      headers: { custom: 1, 'x-icc-attempt': 2 },
    });
  });
});

describe('publishToRetry / publishToDeadLetter', () => {
  const topology = cellTopology('c', { retryDelaysMs: [100, 200] });

  it('sends the retry to the tier of the failed attempt with the next attempt number', async () => {
    const { publisher, sent } = recordingPublisher();
    const tier = await publishToRetry(
      publisher,
      topology,
      message({ 'x-icc-first-seen': '2025-01-01T00:00:00.000Z' }),
      {
        failedAttempt: 2,
        reason: 'IO_ERROR',
        detail: 'EIO',
      },
    );
    expect(tier.name).toBe('icc.c.retry.200ms');
    expect(sent[0]!.queue).toBe('icc.c.retry.200ms');
    expect(sent[0]!.body.toString()).toBe('{"v":1}');
    expect(sent[0]!.properties.headers).toEqual({
      'x-icc-attempt': 3,
      'x-icc-reason': 'IO_ERROR',
      'x-icc-detail': 'EIO',
      'x-icc-first-seen': '2025-01-01T00:00:00.000Z',
    });
  });

  it('dead-letters with the attempt from the headers by default', async () => {
    const { publisher, sent } = recordingPublisher();
    await publishToDeadLetter(publisher, topology, message({ 'x-icc-attempt': 5 }), {
      reason: 'RETRIES_EXHAUSTED',
      detail: 'LOCK_TIMEOUT: busy',
    });
    expect(sent[0]!.queue).toBe('icc.c.dead');
    expect(sent[0]!.properties.headers).toMatchObject({
      'x-icc-attempt': 5,
      'x-icc-reason': 'RETRIES_EXHAUSTED',
    });
    expect(typeof sent[0]!.properties.headers!['x-icc-first-seen']).toBe('string');
  });

  it('publishes retries and dead letters as mandatory: "confirmed" must also mean "in a queue"', async () => {
    const { publisher, sent } = recordingPublisher();
    await publishToRetry(publisher, topology, message({}), {
      failedAttempt: 1,
      reason: 'IO_ERROR',
      detail: 'x',
    });
    await publishToDeadLetter(publisher, topology, message({}), { reason: 'INVALID_REQUEST', detail: 'x' });
    expect(sent.map((s) => s.properties.mandatory)).toEqual([true, true]);
  });
});

describe('signed retry copies', () => {
  it('signs the retry copy it writes, so the next conductor believes its attempt; a dead letter carries no signature', async () => {
    const topology = cellTopology('c', { retryDelaysMs: [100, 200] });
    const signer = new RetryHeaderSigner(Buffer.alloc(32, 1), 'c');
    const { publisher, sent } = recordingPublisher();
    await publishToRetry(publisher, topology, message({}), {
      failedAttempt: 1,
      reason: 'IO_ERROR',
      detail: 'x',
      signer,
    });
    const copy = { ...message(sent[0]!.properties.headers!), content: sent[0]!.body };
    expect(signer.read(copy, 5)).toMatchObject({ attempt: 2, ignored: [] });
    await publishToDeadLetter(publisher, topology, copy, { reason: 'RETRIES_EXHAUSTED', detail: 'x' });
    expect(sent[1]!.properties.headers).not.toHaveProperty('x-icc-signature');
  });
});

describe('publishRouted', () => {
  it('declares the topology again after an unroutable publish, then publishes once more', async () => {
    const { publisher, sent, repairs } = recordingPublisher(1);
    await publishRouted(publisher, '', 'icc.c.dead', Buffer.from('x'), { mandatory: true });
    expect(repairs).toHaveLength(1);
    expect(repairs[0]).toContain('icc.c.dead');
    expect(sent.map((s) => s.queue)).toEqual(['icc.c.dead']);
  });

  it('names what the 404 that closed the channel named, not its own queue', async () => {
    // A deleted events exchange: a result's publish closes the shared channel with a 404, and a retry
    // publish in flight on it fails with it. Naming the retry queue logged it as deleted, its messages
    // gone, and /status never showed the exchange as missing (conductor-topology-loss.e2e-spec.ts).
    const notFound = Object.assign(
      new Error(
        "Channel closed by server: 404 (NOT-FOUND) with message \"NOT_FOUND - no exchange 'icc.c.events' in vhost '/'\"",
      ),
      { code: 404 },
    );
    const { publisher, missing } = recordingPublisher(
      1,
      (routingKey) =>
        new PublishUnroutableError(`RabbitMQ did not confirm a publish to '' / '${routingKey}'`, {
          cause: notFound,
          returned: false,
          missing: notFoundName(notFound),
        }),
    );
    await publishRouted(publisher, '', 'icc.c.retry.200ms', Buffer.from('x'), { mandatory: true });
    expect(missing).toEqual(['icc.c.events']);
    expect(notFoundName(new Error('no exchange'))).toBeUndefined();
  });

  it('gives the error to the caller when the second publish is not routed either', async () => {
    const { publisher, sent, repairs } = recordingPublisher(2);
    await expect(
      publishRouted(publisher, '', 'icc.c.dead', Buffer.from('x'), { mandatory: true }),
    ).rejects.toThrow(PublishUnroutableError);
    expect(repairs).toHaveLength(1);
    expect(sent).toEqual([]);
  });
});
