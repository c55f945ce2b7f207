import { afterEach, describe, expect, it, vi } from 'vitest';
import { MessagingClosedError, PublishNotConfirmedError, PublishUnroutableError } from './errors';
import { HEADER_PUBLISH_ID, Publisher } from './publisher';
import { FakeBrokerConnection, settle } from '../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../test/support/recording-logger';

function publisherWith(options: { confirmTimeoutMs?: number } = {}) {
  const broker = new FakeBrokerConnection(recordingLogger());
  const publisher = new Publisher(broker.asConnection, options);
  return { publisher, broker };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Publisher', () => {
  it('resolves once the broker confirms: JSON, persistent, on one confirm channel', async () => {
    const { publisher, broker } = publisherWith();
    await publisher.publish('events', 'result.completed', { a: 1 }, { messageId: 'm-1' });
    await publisher.sendToQueue('q', Buffer.from('raw'));
    expect(broker.channels).toHaveLength(1);
    expect(broker.lastChannel.confirm).toBe(true);
    const [first, second] = broker.lastChannel.published;
    expect(first).toMatchObject({ exchange: 'events', routingKey: 'result.completed' });
    expect(JSON.parse(first!.content.toString())).toEqual({ a: 1 });
    expect(first!.options).toMatchObject({
      contentType: 'application/json',
      persistent: true,
      messageId: 'm-1',
      mandatory: false,
    });
    expect(first!.options.headers).toBeUndefined();
    expect(second).toMatchObject({ exchange: '', routingKey: 'q' });
    expect(second!.content.toString()).toBe('raw');
  });

  it('rejects a publish the broker nacked', async () => {
    const { publisher, broker } = publisherWith();
    await publisher.publish('e', 'k', {}); // opens the channel
    broker.lastChannel.answer = () => 'nack';
    await expect(publisher.publish('e', 'k', {})).rejects.toBeInstanceOf(PublishNotConfirmedError);
    await expect(publisher.publish('e', 'k', {})).rejects.not.toBeInstanceOf(PublishUnroutableError);
  });

  it('a mandatory publish that came back: PublishUnroutableError, returned', async () => {
    const { publisher, broker } = publisherWith();
    await publisher.publish('e', 'k', {});
    broker.lastChannel.answer = (p) => (p.routingKey === 'gone' ? 'return' : 'ack');
    // Two mandatory publishes in flight at once: the return names its own by the publish id.
    const [gone, there] = await Promise.allSettled([
      publisher.sendToQueue('gone', {}, { mandatory: true, headers: { keep: 1 } }),
      publisher.sendToQueue('there', {}, { mandatory: true }),
    ]);
    expect(there.status).toBe('fulfilled');
    const error = gone.status === 'rejected' ? (gone.reason as unknown) : undefined;
    expect(error).toBeInstanceOf(PublishUnroutableError);
    expect((error as PublishUnroutableError).returned).toBe(true);
    const sent = broker.lastChannel.published.find((p) => p.routingKey === 'gone')!;
    expect(sent.options).toMatchObject({ mandatory: true, headers: { keep: 1 } });
    expect(sent.options.headers?.[HEADER_PUBLISH_ID]).toMatch(/^\d+\.\d+$/);
  });

  it('a return of a non-mandatory publish is not its failure (no id to match)', async () => {
    const { publisher, broker } = publisherWith();
    await publisher.publish('e', 'k', {});
    broker.lastChannel.answer = () => 'return';
    await expect(publisher.publish('events', 'nobody-listens', {})).resolves.toBeUndefined();
  });

  /** A publish whose confirm is still pending when the broker closes its channel with `error`. */
  async function closedWhilePending(error: Error & { code: number }): Promise<unknown> {
    const { publisher, broker } = publisherWith();
    await publisher.publish('e', 'k', {});
    const channel = broker.lastChannel;
    channel.answer = () => 'silent';
    const pending = publisher.publish('e', 'k', {}).catch((e: unknown) => e);
    await settle();
    expect(channel.published).toHaveLength(2);
    channel.closeByBroker(error);
    return pending;
  }

  it('a channel closed by a 404 while the confirm was pending: unroutable, but not this message returned', async () => {
    const error = await closedWhilePending(
      Object.assign(new Error('NOT_FOUND - no exchange'), { code: 404 }),
    );
    expect(error).toBeInstanceOf(PublishUnroutableError);
    expect((error as PublishUnroutableError).returned).toBe(false);
    expect((error as Error).message).toContain('NOT_FOUND');
  });

  it('a channel closed for another reason while the confirm was pending: not confirmed', async () => {
    const error = await closedWhilePending(Object.assign(new Error('PRECONDITION_FAILED'), { code: 406 }));
    expect(error).toBeInstanceOf(PublishNotConfirmedError);
    expect(error).not.toBeInstanceOf(PublishUnroutableError);
  });

  it('gives up on a confirm that never comes, after confirmTimeoutMs', async () => {
    vi.useFakeTimers();
    const { publisher, broker } = publisherWith({ confirmTimeoutMs: 500 });
    await publisher.publish('e', 'k', {});
    broker.lastChannel.answer = () => 'silent';
    const pending = publisher.publish('e', 'k', {}).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(499);
    let settled = false;
    void pending.then(() => (settled = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(settled).toBe(true);
    const error = await pending;
    expect(error).toBeInstanceOf(PublishNotConfirmedError);
    expect((error as Error).message).toContain('within 500 ms');
  });

  it('opens a new channel after the broker closed the old one, and after a reconnect', async () => {
    const { publisher, broker } = publisherWith();
    await publisher.publish('e', 'k', {});
    broker.lastChannel.closeByBroker(new Error('closed'));
    await publisher.publish('e', 'k', {});
    expect(broker.channels).toHaveLength(2);
    broker.reconnect(); // generation 2: the channel of generation 1 is dead even if no close came yet
    await publisher.publish('e', 'k', {});
    expect(broker.channels).toHaveLength(3);
    expect(broker.lastChannel.published).toHaveLength(1);
  });

  it('concurrent publishes share one opening', async () => {
    const { publisher, broker } = publisherWith();
    await Promise.all([publisher.publish('e', '1', {}), publisher.publish('e', '2', {})]);
    expect(broker.channels).toHaveLength(1);
    expect(broker.lastChannel.published.map((p) => p.routingKey)).toEqual(['1', '2']);
  });

  it('a channel that throws on publish (closed under us): not confirmed, and the next publish opens another', async () => {
    const { publisher, broker } = publisherWith();
    await publisher.publish('e', 'k', {});
    broker.lastChannel.closed = true; // amqplib knows; our 'close' listener has not run yet
    await expect(publisher.publish('e', 'k', {})).rejects.toThrow(/failed: Channel closed/);
    await publisher.publish('e', 'k', {});
    expect(broker.channels).toHaveLength(2);
  });

  it('close(): closes its channel; later publishes are refused', async () => {
    const { publisher, broker } = publisherWith();
    await publisher.publish('e', 'k', {});
    await publisher.close();
    expect(broker.lastChannel.closed).toBe(true);
    await expect(publisher.publish('e', 'k', {})).rejects.toBeInstanceOf(MessagingClosedError);
    expect(broker.channels).toHaveLength(1);
  });

  it('repairTopology() asks the connection', async () => {
    const { publisher, broker } = publisherWith();
    await publisher.repairTopology('spec');
    expect(broker.repairs).toEqual(['spec']);
  });
});
