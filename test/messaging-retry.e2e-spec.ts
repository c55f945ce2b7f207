import { describe, expect, it } from 'vitest';
import {
  attemptFromHeaders,
  HEADER_ATTEMPT,
  HEADER_DETAIL,
  HEADER_FIRST_SEEN,
  HEADER_REASON,
  MAX_REQUEST_BYTES,
  type CellTopology,
  type CellTopologyOptions,
} from '@app/contracts';
import {
  consume,
  MAX_DETAIL_HEADER_LENGTH,
  Publisher,
  publishToDeadLetter,
  publishToRetry,
  type Delivery,
} from '@app/messaging';
import { getOneMessage } from './support/rabbitmq';
import { waitFor } from './support/async';
import { type BrokerTestCell, startCellConnection, useBrokerTestCell } from './support/broker-test-cell';

describe('messaging: retry path and dead-lettering', () => {
  // Short delay tiers keep the test fast; the mechanism is the same as with the defaults.
  const options: CellTopologyOptions = { retryDelaysMs: [300, 600], deliveryLimit: 2 };
  let topology: CellTopology;
  let closers: (() => Promise<void>)[];
  let cell: BrokerTestCell;

  useBrokerTestCell(options, (fresh) => ({ topology, closers } = cell = fresh));

  async function session() {
    const { connection } = startCellConnection(cell);
    await connection.waitUntilConnected(10_000);
    const publisher = new Publisher(connection);
    closers.push(() => publisher.close());
    return { connection, publisher };
  }

  const request = { v: 1, requestId: 'r-1', imageId: 'img', destination: 'node-b' };
  const props = { messageId: 'r-1', correlationId: 'c-1', replyTo: 'reply-q' };

  it('delays a retry in the tier queue, then returns it to the request queue with the attempt incremented', async () => {
    const { connection, publisher } = await session();
    const seen: { delivery: Delivery; at: number }[] = [];
    const consumer = await consume(
      connection,
      topology.requestQueue.name,
      { prefetch: 1 },
      async (delivery) => {
        seen.push({ delivery, at: Date.now() });
        const attempt = attemptFromHeaders(delivery.headers);
        if (attempt < 3) {
          // Publish the copy (confirmed), then ack the original.
          await publishToRetry(publisher, topology, delivery.message, {
            failedAttempt: attempt,
            reason: 'LOCK_TIMEOUT',
            detail: `attempt ${attempt}: lock busy`,
          });
        }
        delivery.ack();
      },
    );
    closers.push(() => consumer.close());

    await publisher.sendToQueue(topology.requestQueue.name, request, props);
    await waitFor(() => seen.length === 3, 'three attempts', 15_000);

    const [first, second, third] = seen;
    expect(first!.delivery.headers[HEADER_ATTEMPT]).toBeUndefined();
    // Tier 1 (300 ms) after attempt 1, tier 2 (600 ms) after attempt 2.
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(280);
    expect(third!.at - second!.at).toBeGreaterThanOrEqual(580);

    for (const [index, { delivery }] of [second!, third!].entries()) {
      expect(delivery.headers[HEADER_ATTEMPT]).toBe(index + 2);
      expect(delivery.headers[HEADER_REASON]).toBe('LOCK_TIMEOUT');
      expect(delivery.headers[HEADER_DETAIL]).toBe(`attempt ${index + 1}: lock busy`);
      expect(delivery.properties).toMatchObject({
        ...props,
        contentType: 'application/json',
        deliveryMode: 2,
      });
      expect(JSON.parse(delivery.content.toString())).toEqual(request);
      // The broker's own x-death bookkeeping from the previous cycle is not carried into the copy.
      expect((delivery.headers['x-death'] as { queue: string }[]).map((d) => d.queue)).toEqual([
        topology.retryQueues[index]!.name,
      ]);
    }
    // First-seen is set once and kept across retries.
    const firstSeen = second!.delivery.headers[HEADER_FIRST_SEEN];
    expect(typeof firstSeen).toBe('string');
    expect(third!.delivery.headers[HEADER_FIRST_SEEN]).toBe(firstSeen);
  });

  it('dead-letters with the reason, detail and attempt in headers, keeping body and properties', async () => {
    const { connection, publisher } = await session();
    const raw = Buffer.from('{"v":1,"requestId":"r-1","destination":"../etc"}');
    const consumer = await consume(
      connection,
      topology.requestQueue.name,
      { prefetch: 1 },
      async (delivery) => {
        await publishToDeadLetter(publisher, topology, delivery.message, {
          reason: 'INVALID_REQUEST',
          detail: `destination: must not contain '..'${'!'.repeat(MAX_REQUEST_BYTES)}`,
        });
        delivery.ack();
      },
    );
    closers.push(() => consumer.close());

    await publisher.sendToQueue(topology.requestQueue.name, raw, {
      ...props,
      headers: { [HEADER_ATTEMPT]: 2, custom: 'kept' },
    });
    const dead = await getOneMessage(topology.deadLetterQueue.name);
    expect(dead.content.equals(raw)).toBe(true);
    expect(dead.properties).toMatchObject({ ...props, contentType: 'application/json', deliveryMode: 2 });
    const headers = dead.properties.headers!;
    expect(headers[HEADER_REASON]).toBe('INVALID_REQUEST');
    expect(headers[HEADER_DETAIL]).toMatch(/^destination: must not contain '\.\.'/);
    expect((headers[HEADER_DETAIL] as string).length).toBe(MAX_DETAIL_HEADER_LENGTH);
    expect(headers[HEADER_ATTEMPT]).toBe(2);
    expect(headers.custom).toBe('kept');
  });

  it('lets the broker dead-letter a message whose consumer keeps crashing (x-delivery-limit)', async () => {
    const { connection } = await session();
    const publisher = new Publisher(connection);
    closers.push(() => publisher.close());
    await publisher.sendToQueue(topology.requestQueue.name, request, props);

    // A "crash": the consumer's channel goes away with the delivery unsettled, so the broker requeues it
    // and counts the delivery. Limit 2: the third return dead-letters it.
    let deliveries = 0;
    for (let crash = 1; crash <= 3; crash++) {
      let got = false;
      const consumer = await consume(connection, topology.requestQueue.name, { prefetch: 1 }, async () => {
        got = true;
        deliveries += 1;
        await new Promise(() => {}); // never settles: the handler is "stuck" when the process dies
      });
      await waitFor(() => got, `delivery ${crash}`);
      await consumer.close();
    }
    expect(deliveries).toBe(3);
    const dead = await getOneMessage(topology.deadLetterQueue.name);
    expect(dead.properties.messageId).toBe('r-1');
    expect(dead.properties.headers?.['x-first-death-queue']).toBe(topology.requestQueue.name);
    expect(dead.properties.headers?.[HEADER_REASON]).toBeUndefined(); // only our own dead-lettering sets it
  });
});
