import { describe, expect, it } from 'vitest';
import type { CellTopology } from '@app/contracts';
import { consume, Publisher, type Delivery } from '@app/messaging';
import { closeConnectionsNamed, queueMessageCount, withChannel } from './support/rabbitmq';
import { deferred, waitFor } from './support/async';
import { type BrokerTestCell, startCellConnection, useBrokerTestCell } from './support/broker-test-cell';

describe('messaging: connection closed by the broker', () => {
  let cellId: string;
  let topology: CellTopology;
  let closers: (() => Promise<void>)[];
  let cell: BrokerTestCell;

  useBrokerTestCell(undefined, (fresh) => ({ cellId, topology, closers } = cell = fresh));

  it('reconnects, re-declares, resumes consuming, and the unacked message is redelivered', async () => {
    const name = `icc-test-${cellId}`;
    const { connection, logger } = startCellConnection(cell, {
      reconnect: { initialDelayMs: 300, maxDelayMs: 1_000 },
    });
    const disconnects: Error[] = [];
    connection.on('disconnected', ({ reason }) => disconnects.push(reason));
    // A listener that throws must not break anything (it is logged).
    connection.on('connected', () => {
      throw new Error('listener bug');
    });
    await connection.waitUntilConnected(10_000);
    const publisher = new Publisher(connection);
    closers.push(() => publisher.close());

    const deliveries: Delivery[] = [];
    const hold = deferred();
    const consumer = await consume(
      connection,
      topology.requestQueue.name,
      { prefetch: 1 },
      async (delivery) => {
        deliveries.push(delivery);
        // The first delivery is held unacked: a copy in progress when the connection drops.
        if (deliveries.length === 1) await hold.promise;
        else delivery.ack();
      },
    );
    closers.push(() => consumer.close());

    await publisher.sendToQueue(topology.requestQueue.name, { n: 1 }, { messageId: 'm-1' });
    await waitFor(() => deliveries.length === 1, 'the first delivery');
    const first = deliveries[0]!;
    expect(first.redelivered).toBe(false);

    // Something removed the events exchange: the reconnection declares it again.
    await withChannel(async (channel) => void (await channel.deleteExchange(topology.eventsExchange.name)));

    // Only our connection: other test files may be using the broker at the same time.
    expect(await closeConnectionsNamed(name, 'test: simulated connection loss')).toBe(1);
    await waitFor(() => disconnects.length === 1, 'the disconnected event');
    expect(disconnects[0]!.message).toMatch(/CONNECTION_FORCED|simulated connection loss/);
    expect(connection.state).toBe('disconnected');

    // A publish made while disconnected waits for the reconnection, then is confirmed.
    const publishedWhileDown = publisher.sendToQueue(
      topology.requestQueue.name,
      { n: 2 },
      { messageId: 'm-2' },
    );

    await waitFor(() => connection.state === 'connected', 'the reconnection');
    expect(connection.reconnects).toBe(1);
    expect(connection.generation).toBe(2);
    await publishedWhileDown;
    await withChannel((channel) => channel.checkExchange(topology.eventsExchange.name));

    // The held delivery's channel died with the connection: acking it is a logged no-op.
    expect(first.ack()).toBe(false);
    expect(first.outcome).toBe('lost');
    expect(logger.entries.some((e) => e.level === 'warn' && e.msg.includes('channel is gone'))).toBe(true);
    expect(logger.entries.some((e) => e.level === 'error' && e.msg.includes('listener threw'))).toBe(true);
    hold.resolve();

    // Consumption resumed on a new channel: m-1 comes back flagged redelivered, then m-2.
    await waitFor(() => deliveries.length === 3, 'the redelivery and the new message');
    const redelivered = deliveries.find((d) => d !== first && d.properties.messageId === 'm-1');
    expect(redelivered?.redelivered).toBe(true);
    expect(redelivered!.channelGeneration).not.toBe(first.channelGeneration);
    expect(deliveries.map((d) => d.properties.messageId as string).sort()).toEqual(['m-1', 'm-1', 'm-2']);
    expect(consumer.subscribed).toBe(true);
    await waitFor(
      async () => (await queueMessageCount(topology.requestQueue.name)) === 0,
      'every delivery acked and gone from the queue',
    );
  });

  it('counts every reconnect and keeps working after several losses', async () => {
    const name = `icc-test-${cellId}`;
    const { connection } = startCellConnection(cell, { reconnect: { initialDelayMs: 100, maxDelayMs: 500 } });
    await connection.waitUntilConnected(10_000);
    const publisher = new Publisher(connection);
    closers.push(() => publisher.close());
    let acked = 0;
    const consumer = await consume(connection, topology.requestQueue.name, { prefetch: 4 }, (delivery) => {
      if (delivery.ack()) acked += 1;
    });
    closers.push(() => consumer.close());

    for (let i = 1; i <= 2; i++) {
      await closeConnectionsNamed(name);
      await waitFor(() => connection.state === 'connected' && connection.reconnects === i, `reconnect ${i}`);
    }
    await waitFor(() => consumer.subscribed, 're-subscription');
    await publisher.sendToQueue(topology.requestQueue.name, { n: 1 });
    await waitFor(() => acked === 1, 'a delivery after two reconnects');
  });
  it('subscribes a consumer created before the first connection once it is up', async () => {
    const { connection } = startCellConnection(cell);
    expect(connection.state).toBe('connecting');
    let acked = 0;
    const consumer = await consume(connection, topology.requestQueue.name, { prefetch: 1 }, (delivery) => {
      if (delivery.ack()) acked += 1;
    });
    closers.push(() => consumer.close());
    expect(consumer.subscribed).toBe(false);
    const publisher = new Publisher(connection);
    closers.push(() => publisher.close());
    await publisher.sendToQueue(topology.requestQueue.name, { n: 1 }); // waits for the connection
    await waitFor(() => acked === 1, 'the delivery');
    expect(connection.reconnects).toBe(0);
  });

  it('declares the topology again and re-subscribes after the broker cancels the consumer (queue deleted)', async () => {
    const { connection, logger } = startCellConnection(cell);
    await connection.waitUntilConnected(10_000);
    let acked = 0;
    const consumer = await consume(
      connection,
      topology.requestQueue.name,
      { prefetch: 1, resubscribeDelayMs: 100 },
      (delivery) => {
        if (delivery.ack()) acked += 1;
      },
    );
    closers.push(() => consumer.close());

    await withChannel(async (channel) => void (await channel.deleteQueue(topology.requestQueue.name)));
    // Nobody else declares it: the cancel makes the connection declare the whole topology again.
    await waitFor(
      () => connection.topologyHealth().redeclarations === 1,
      'the topology declared again',
      15_000,
    );
    await waitFor(() => consumer.subscribed, 're-subscription', 15_000);
    expect(connection.topologyHealth().lastCause).toBe(
      `consumer of ${topology.requestQueue.name} cancelled by the server`,
    );
    expect(logger.entries.some((e) => e.msg === 'topology declared again')).toBe(true);
    expect(connection.reconnects).toBe(0); // the connection itself was never lost

    const publisher = new Publisher(connection);
    closers.push(() => publisher.close());
    await publisher.sendToQueue(topology.requestQueue.name, { n: 1 });
    await waitFor(() => acked === 1, 'a delivery after re-subscribing');
  });
});
