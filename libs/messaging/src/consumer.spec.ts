import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ConsumeOptions, DeliveryHandler } from './consume-policy';
import { Consumer } from './consumer';
import type { Delivery } from './delivery';
import { FakeBrokerConnection, consumeMessage, settle } from '../../../test/support/amqp-fakes';
import { deferred } from '../../../test/support/async';
import { recordingLogger } from '../../../test/support/recording-logger';

function consumerWith(handler: DeliveryHandler, options: Partial<ConsumeOptions> = {}) {
  const log = recordingLogger();
  const broker = new FakeBrokerConnection(log);
  const consumer = new Consumer(broker.asConnection, 'requests', { prefetch: 2, ...options }, handler);
  return { consumer, broker, log };
}

/** A consumer whose handler keeps every delivery, never settling it. */
function holdingConsumer() {
  const held: Delivery[] = [];
  const built = consumerWith((d) => {
    held.push(d);
    return new Promise(() => undefined);
  });
  return { ...built, held };
}

const message = () => consumeMessage({ n: 1 });
const messages = (log: ReturnType<typeof recordingLogger>) => log.entries.map((e) => e.msg);

afterEach(() => {
  vi.useRealTimers();
});

describe('Consumer', () => {
  it.each([0, -1, 1.5])('refuses a prefetch of %s', (prefetch) => {
    expect(() => consumerWith(() => undefined, { prefetch })).toThrow(/prefetch must be a positive integer/);
  });

  it('subscribes on its own channel with its prefetch, manual acks', async () => {
    const { consumer, broker } = consumerWith(() => undefined);
    await consumer.start();
    expect(consumer.subscribed).toBe(true);
    expect(broker.channels).toHaveLength(1);
    expect(broker.lastChannel.prefetchCount).toBe(2);
    expect([...broker.lastChannel.consumers.values()].map((c) => c.queue)).toEqual(['requests']);
  });

  it('started while disconnected: resolves at once and subscribes on the next connection', async () => {
    const { consumer, broker } = consumerWith(() => undefined);
    broker.state = 'disconnected';
    await consumer.start();
    expect(broker.channels).toEqual([]);
    broker.reconnect();
    await settle();
    expect(consumer.subscribed).toBe(true);
    expect(consumer.channelGeneration).toBeDefined();
  });

  it('counts a delivery in flight until its handler has settled it and returned', async () => {
    const release = deferred();
    const { consumer, broker } = consumerWith(async (d) => {
      await release.promise;
      d.ack();
    });
    await consumer.start();
    broker.lastChannel.deliver(message());
    expect(consumer.inFlightCount).toBe(1);
    expect(await consumer.drain(0)).toBe(false);
    const drained = consumer.drain(10_000);
    release.resolve();
    expect(await drained).toBe(true);
    expect(consumer.inFlightCount).toBe(0);
    expect(broker.lastChannel.acks).toHaveLength(1);
  });

  it.each([
    ['returns', () => undefined],
    [
      'throws',
      () => {
        throw new Error('handler bug');
      },
    ],
  ])(
    'a handler that %s without settling: rejected (dead-lettered by the queue), logged',
    async (what, body) => {
      const { consumer, broker, log } = consumerWith(body);
      await consumer.start();
      broker.lastChannel.deliver(message());
      await settle();
      expect(broker.lastChannel.nacks.map((n) => n.requeue)).toEqual([false]);
      expect(messages(log)).toContain(
        `handler ${what === 'returns' ? 'returned' : 'threw'} without settling the delivery`,
      );
    },
  );

  it("with unsettled: 'requeue', such a delivery is handed back instead", async () => {
    const { consumer, broker } = consumerWith(() => undefined, { unsettled: 'requeue' });
    await consumer.start();
    broker.lastChannel.deliver(message());
    await settle();
    expect(broker.lastChannel.nacks.map((n) => n.requeue)).toEqual([true]);
  });

  it('a handler that throws after settling: logged, not settled twice', async () => {
    const { consumer, broker, log } = consumerWith((d) => {
      d.ack();
      throw new Error('late bug');
    });
    await consumer.start();
    broker.lastChannel.deliver(message());
    await settle();
    expect(broker.lastChannel.acks).toHaveLength(1);
    expect(broker.lastChannel.nacks).toEqual([]);
    expect(messages(log)).toContain('handler threw after settling the delivery');
  });

  it('pause() cancels the subscription and hands back a delivery that raced the cancel; resume() subscribes again', async () => {
    const seen: Delivery[] = [];
    const { consumer, broker } = consumerWith((d) => {
      seen.push(d);
      d.ack();
    });
    await consumer.start();
    const channel = broker.lastChannel;
    const [onMessage] = [...channel.consumers.values()].map((c) => c.onMessage);
    await consumer.pause();
    expect(consumer.state).toBe('paused');
    expect(channel.cancelled).toHaveLength(1);
    expect(consumer.subscribed).toBe(false);
    onMessage!(message()); // sent by the broker before it processed the cancel
    expect(seen).toEqual([]);
    expect(channel.nacks.map((n) => n.requeue)).toEqual([true]);
    await consumer.resume();
    expect(consumer.subscribed).toBe(true);
    expect(broker.channels).toHaveLength(1); // the same channel: deliveries in flight can still be acked
  });

  it('a channel the broker closed is opened again after the resubscribe delay, doubling per failure', async () => {
    vi.useFakeTimers();
    const { consumer, broker } = consumerWith(() => undefined, { resubscribeDelayMs: 100 });
    await consumer.start();
    const first = broker.lastChannel;
    first.closeByBroker(Object.assign(new Error('PRECONDITION_FAILED'), { code: 406 }));
    expect(consumer.subscribed).toBe(false);
    await vi.advanceTimersByTimeAsync(99);
    expect(broker.channels).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(broker.channels).toHaveLength(2);
    expect(consumer.subscribed).toBe(true);

    // A subscribe that worked resets the delay; failures in a row double it.
    broker.consumeErrors.push(new Error('refused'));
    broker.lastChannel.closeByBroker(new Error('again'));
    await vi.advanceTimersByTimeAsync(100);
    const third = broker.lastChannel;
    expect(broker.channels).toHaveLength(3);
    expect(third.consumeCalls).toBe(1);
    third.consumeError = new Error('refused again');
    await vi.advanceTimersByTimeAsync(199);
    expect(third.consumeCalls).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(third.consumeCalls).toBe(2);
    await vi.advanceTimersByTimeAsync(399);
    expect(third.consumeCalls).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(third.consumeCalls).toBe(3);
    expect(consumer.subscribed).toBe(true);
  });

  it("a delivery of a closed channel is never acked on the new one (its tag is the old channel's)", async () => {
    vi.useFakeTimers();
    const { consumer, broker, held } = holdingConsumer();
    await consumer.start();
    broker.lastChannel.deliver(message());
    broker.lastChannel.closeByBroker(new Error('channel closed'));
    await vi.advanceTimersByTimeAsync(1_000);
    expect(broker.channels).toHaveLength(2);
    expect(held[0]!.ack()).toBe(false);
    expect(held[0]!.outcome).toBe('lost');
    expect(broker.channels.flatMap((c) => c.acks)).toEqual([]);
  });

  it('a cancel from the server (queue deleted): topology declared again and subscribed again at once', async () => {
    const { consumer, broker, log } = consumerWith(() => undefined);
    await consumer.start();
    broker.lastChannel.cancelByServer();
    expect(consumer.subscribed).toBe(false);
    await settle();
    expect(broker.repairs).toEqual(['consumer of requests cancelled by the server']);
    expect(consumer.subscribed).toBe(true);
    expect(broker.channels).toHaveLength(1);
    expect(messages(log)).toContain(
      'RabbitMQ cancelled the consumer (queue deleted?); declaring the topology again and re-subscribing',
    );
  });

  it('a queue missing at subscribe time: start() rejects, the topology is declared again and a retry scheduled', async () => {
    vi.useFakeTimers();
    const { consumer, broker } = consumerWith(() => undefined, { resubscribeDelayMs: 100 });
    const notFound = Object.assign(new Error('NOT_FOUND - no queue'), { code: 404 });
    broker.consumeErrors.push(notFound);
    await expect(consumer.start()).rejects.toBe(notFound);
    expect(broker.repairs).toEqual(['subscribe to requests: queue not found']);
    await vi.advanceTimersByTimeAsync(100);
    expect(consumer.subscribed).toBe(true);
  });

  it('after a reconnect: a channel of the new connection, and in-flight deliveries of the old one are lost', async () => {
    const { consumer, broker, held } = holdingConsumer();
    await consumer.start();
    broker.lastChannel.deliver(message());
    broker.disconnect();
    broker.reconnect();
    await settle();
    expect(broker.channels).toHaveLength(2);
    expect(consumer.subscribed).toBe(true);
    expect(held[0]!.ack()).toBe(false);
  });

  it("a reconnect announced before the old channel's close event: a channel of the new connection all the same", async () => {
    const { consumer, broker } = consumerWith(() => undefined);
    await consumer.start();
    const old = broker.lastChannel;
    broker.reconnect();
    await settle();
    expect(broker.channels).toHaveLength(2);
    expect(broker.lastChannel).not.toBe(old);
    expect(broker.lastChannel.consumers.size).toBe(1);
    expect(consumer.subscribed).toBe(true);
  });

  it('close(): cancels, closes its channel, marks unsettled deliveries lost and ignores later connections', async () => {
    const { consumer, broker, held } = holdingConsumer();
    await consumer.start();
    const channel = broker.lastChannel;
    channel.deliver(message());
    await consumer.close();
    expect(channel.cancelled).toHaveLength(1);
    expect(channel.closed).toBe(true);
    expect(held[0]!.outcome).toBe('lost');
    broker.reconnect();
    await settle();
    expect(broker.channels).toHaveLength(1);
    expect(broker.listenerCount('connected')).toBe(0);
    await expect(consumer.start()).rejects.toThrow('Consumer is closed');
  });
});
