import { describe, expect, it } from 'vitest';
import { cellTopology, type CellTopology } from '@app/contracts';
import {
  BrokerConnection,
  BrokerUnavailableError,
  consume,
  declareCellTopology,
  Publisher,
  type Consumer,
  type Delivery,
} from '@app/messaging';
import { AMQP_URL, getOneMessage, queueMessageCount, withChannel } from './support/rabbitmq';
import { deferred, sleep, waitFor } from './support/async';
import { recordingLogger } from './support/recording-logger';
import { type BrokerTestCell, startCellConnection, useBrokerTestCell } from './support/broker-test-cell';

describe('messaging against RabbitMQ', () => {
  let cellId: string;
  let topology: CellTopology;
  let closers: (() => Promise<void>)[];
  let cell: BrokerTestCell;

  useBrokerTestCell(undefined, (fresh) => ({ cellId, topology, closers } = cell = fresh));

  async function session(name = `icc-test-${cellId}`, topologies = [topology]) {
    const { connection, logger } = startCellConnection(cell, { connectionName: name, topologies });
    await connection.waitUntilConnected(10_000);
    const publisher = new Publisher(connection, { logger });
    closers.push(() => publisher.close());
    return { connection, publisher, logger };
  }

  function track(consumer: Consumer): Consumer {
    closers.push(() => consumer.close());
    return consumer;
  }

  it('declares the topology idempotently, and refuses a different one loudly', async () => {
    const first = await session();
    expect(first.connection.state).toBe('connected');
    // Again from a second connection and twice on a raw channel: same arguments, no error.
    await session(`icc-test-${cellId}-b`);
    await withChannel(async (channel) => {
      await declareCellTopology(channel, topology);
      await declareCellTopology(channel, topology);
      for (const q of [topology.requestQueue, topology.deadLetterQueue, ...topology.retryQueues]) {
        await channel.checkQueue(q.name);
      }
      await channel.checkExchange(topology.eventsExchange.name);
    });

    // A different delivery limit for the same queue is a deployment error: the connection attempt fails
    // (and keeps being retried with backoff) instead of running with the wrong topology.
    const logger = recordingLogger();
    const conflicting = new BrokerConnection({
      url: AMQP_URL,
      connectionName: `icc-test-${cellId}-conflict`,
      topologies: [cellTopology(cellId, { deliveryLimit: 3 })],
      reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
      logger,
    });
    const failures: Error[] = [];
    conflicting.on('connect-failed', ({ error }) => failures.push(error));
    conflicting.start();
    closers.push(() => conflicting.close());
    await waitFor(() => failures.length >= 2, 'two failed attempts');
    expect(conflicting.state).toBe('connecting');
    expect(failures[0]?.message).toMatch(/PRECONDITION_FAILED.*x-delivery-limit/);
    expect(failures[0]?.message).toContain(`queue ${topology.requestQueue.name} exists with other arguments`);
    expect(failures[0]?.message).toContain('docs/protocol.md, "Upgrading a cell"');
    await expect(conflicting.waitUntilConnected(100)).rejects.toThrow(BrokerUnavailableError);
  });

  it('publishes with confirms and consumes with manual acks', async () => {
    const { connection, publisher } = await session();
    const received: Delivery[] = [];
    track(
      await consume(connection, topology.requestQueue.name, { prefetch: 1 }, (delivery) => {
        received.push(delivery);
        expect(delivery.ack()).toBe(true);
        expect(delivery.ack()).toBe(false); // a second ack would close the channel: it is a no-op
      }),
    );

    const request = { v: 1, requestId: 'r-1', imageId: 'img', destination: 'node-b' };
    await publisher.sendToQueue(topology.requestQueue.name, request, {
      messageId: 'r-1',
      correlationId: 'c-1',
      replyTo: 'reply-q',
    });

    await waitFor(() => received.length === 1, 'the delivery');
    const [delivery] = received;
    expect(JSON.parse(delivery!.content.toString())).toEqual(request);
    expect(delivery!.properties).toMatchObject({
      messageId: 'r-1',
      correlationId: 'c-1',
      replyTo: 'reply-q',
      contentType: 'application/json',
      deliveryMode: 2,
    });
    expect(delivery!.redelivered).toBe(false);
    expect(delivery!.outcome).toBe('acked');
    await waitFor(
      async () => (await queueMessageCount(topology.requestQueue.name)) === 0,
      'the acked request gone from the queue',
    );

    // Events go to the topic exchange by routing key.
    const bound = await withChannel(async (channel) => {
      const { queue } = await channel.assertQueue('', {
        exclusive: false,
        durable: false,
        autoDelete: false,
      });
      await channel.bindQueue(queue, topology.eventsExchange.name, 'result.*');
      return queue;
    });
    closers.push(() => withChannel(async (channel) => void (await channel.deleteQueue(bound))));
    await publisher.publish(topology.eventsExchange.name, 'result.completed', {
      type: 'result',
      requestId: 'r-1',
    });
    const event = await getOneMessage(bound);
    expect(event.fields.routingKey).toBe('result.completed');
    expect(JSON.parse(event.content.toString())).toEqual({ type: 'result', requestId: 'r-1' });
  });

  it('honours prefetch: never more unacked deliveries than the prefetch', async () => {
    const { connection, publisher } = await session();
    let current = 0;
    let max = 0;
    let done = 0;
    // The first deliveries wait until two are in flight at once, so the limit is reached however the
    // deliveries are spread in time; a third one arriving meanwhile would break it.
    const twoInFlight = deferred();
    track(
      await consume(connection, topology.requestQueue.name, { prefetch: 2 }, async (delivery) => {
        current += 1;
        max = Math.max(max, current);
        if (current === 2) twoInFlight.resolve();
        await twoInFlight.promise;
        await sleep(50);
        current -= 1;
        delivery.ack();
        done += 1;
      }),
    );
    await Promise.all(
      Array.from({ length: 6 }, (_, i) => publisher.sendToQueue(topology.requestQueue.name, { n: i })),
    );
    await waitFor(() => done === 6, 'six deliveries');
    expect(max).toBe(2);
  });

  it('pause stops new deliveries while an in-flight one can still be acked; resume picks up again', async () => {
    const { connection, publisher } = await session();
    const release = deferred();
    const seen: string[] = [];
    let held: Delivery | undefined;
    const consumer = track(
      await consume(connection, topology.requestQueue.name, { prefetch: 1 }, async (delivery) => {
        seen.push(delivery.content.toString());
        if (!held) {
          held = delivery;
          await release.promise;
        }
        delivery.ack();
      }),
    );
    await publisher.sendToQueue(topology.requestQueue.name, { n: 1 });
    await waitFor(() => held, 'the first delivery');

    await consumer.pause();
    expect(consumer.state).toBe('paused');
    expect(consumer.subscribed).toBe(false);
    await publisher.sendToQueue(topology.requestQueue.name, { n: 2 });
    // n=2 sits in the queue, ready and undelivered: the paused consumer is not subscribed.
    await waitFor(
      async () => (await queueMessageCount(topology.requestQueue.name)) === 1,
      'the second request ready in the queue',
    );
    expect(seen).toEqual(['{"n":1}']);
    expect(consumer.inFlightCount).toBe(1);

    release.resolve();
    expect(await consumer.drain(5_000)).toBe(true);
    expect(held!.outcome).toBe('acked'); // acked on the same, still open, channel
    expect(await queueMessageCount(topology.requestQueue.name)).toBe(1); // n=2 waits in the queue

    await consumer.resume();
    await waitFor(() => seen.length === 2, 'the second delivery after resume');
    expect(seen[1]).toBe('{"n":2}');
  });

  it('rejects a handler failure into the dead-letter queue (no hot requeue loop)', async () => {
    const { connection, publisher, logger } = await session();
    track(
      await consume(connection, topology.requestQueue.name, { prefetch: 1 }, () => {
        throw new Error('bug in handler');
      }),
    );
    await publisher.sendToQueue(topology.requestQueue.name, { n: 1 }, { messageId: 'm-1' });
    const dead = await getOneMessage(topology.deadLetterQueue.name);
    expect(dead.properties.messageId).toBe('m-1');
    expect(dead.properties.headers?.['x-first-death-reason']).toBe('rejected');
    expect(logger.entries.some((e) => e.level === 'error' && e.msg.includes('handler threw'))).toBe(true);
  });

  it('fails a publish with a clear error when the broker cannot be reached in time', async () => {
    const logger = recordingLogger();
    const connection = new BrokerConnection({
      url: 'amqp://guest:secret@127.0.0.1:1',
      connectionName: `icc-test-${cellId}-nowhere`,
      reconnect: { initialDelayMs: 50, maxDelayMs: 100 },
      logger,
    }).start();
    closers.push(() => connection.close());
    const publisher = new Publisher(connection, { waitForConnectionMs: 300, logger });
    // It gives up (the test's timeout bounds it) instead of waiting for the reconnect loop.
    const error = await publisher.sendToQueue('q', { n: 1 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    expect((error as Error).message).toMatch(
      /^not connected to RabbitMQ at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1 within 300 ms/,
    );
    expect((error as Error).message).toContain('ECONNREFUSED');
  });
});
