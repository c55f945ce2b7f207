import type { Message } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { cellTopology } from '@app/contracts';
import type { Publisher, PublishProperties } from './publisher';
import { publishToDeadLetter, publishToRetry, republishProperties } from './retry-path';

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

function recordingPublisher() {
  const sent: { queue: string; body: Buffer; properties: PublishProperties }[] = [];
  const publisher = {
    sendToQueue: async (queue: string, body: Buffer, properties: PublishProperties) => {
      sent.push({ queue, body, properties });
    },
  } as unknown as Publisher;
  return { publisher, sent };
}

describe('republishProperties', () => {
  it('keeps identity and custom headers, drops broker bookkeeping and the per-message TTL', () => {
    const props = republishProperties(
      message({ custom: 1, 'x-death': [{}], 'x-delivery-count': 4, 'x-first-death-reason': 'expired' }),
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
});
