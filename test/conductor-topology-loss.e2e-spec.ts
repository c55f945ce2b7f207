import { connect } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { type HeldLock, NodeLockManager } from '@app/locking';
import { AdminHttp, metricValue } from './support/admin-http';
import { type DeadLetter, conductorTestbed, errorLines, takeDeadLetters } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { AMQP_URL, withChannel } from './support/rabbitmq';
import { sleep, waitFor } from './support/async';

const KiB = 1024;
const BUSY = 'busy.qcow2';

interface Status {
  topology: {
    redeclarations: number;
    lastCause: string | null;
    lastRedeclaredAt: string | null;
    failures: number;
    missing: Record<string, { redeclarations: number; lastCause: string; lastAt: string }>;
  };
  consumer: { subscribed: boolean };
}

/**
 * Deletes a retry tier once it holds no message. Tiers are quorum queues, which refuse `if-empty`, so the
 * check is a passive declare right before the delete: a retry copy landing in between would be taken
 * along (a queue deleted with messages takes them, which no client can prevent). The window is one round
 * trip, and the one busy request enters a tier once every few seconds; what is tested is that nothing the
 * conductor sends afterwards, or holds while it happens, is lost.
 */
async function deleteWhenEmpty(queue: string, timeoutMs = 60_000): Promise<void> {
  const connection = await connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ((await channel.checkQueue(queue)).messageCount === 0) {
        await channel.deleteQueue(queue);
        return;
      }
      if (Date.now() > deadline) throw new Error(`${queue} never empty within ${timeoutMs} ms`);
      await sleep(10);
    }
  } finally {
    await connection.close().catch(() => undefined);
  }
}

/**
 * Quorum queues refuse `if-empty`: the request queue is deleted once nothing is ready in it and every
 * retry tier is empty, so that every request of the cell is in the conductor's hands (unacked) as it
 * goes. The caller makes sure that none of those can fail within the few round trips of this check: a
 * retry published into a tier after its count was read would later expire into no queue, and RabbitMQ
 * drops a dead letter whose queue is gone (a full run lost two requests that way).
 */
async function deleteRequestQueueWhileAllInFlight(
  requestQueue: string,
  retryQueues: string[],
  timeoutMs = 60_000,
): Promise<void> {
  const connection = await connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    const deadline = Date.now() + timeoutMs;
    // Two readings in a row: a message on its way from a tier to the request queue is in neither for a
    // moment, and shows in the request queue (or the conductor's hands) by the second.
    let emptyReadings = 0;
    for (;;) {
      const counts = [];
      for (const q of [...retryQueues, requestQueue]) counts.push((await channel.checkQueue(q)).messageCount);
      emptyReadings = counts.every((n) => n === 0) ? emptyReadings + 1 : 0;
      if (emptyReadings === 2) {
        await channel.deleteQueue(requestQueue);
        return;
      }
      if (Date.now() > deadline) throw new Error(`the cell's queues never all empty within ${timeoutMs} ms`);
      await sleep(10);
    }
  } finally {
    await connection.close().catch(() => undefined);
  }
}

async function deleteExchange(exchange: string): Promise<void> {
  const connection = await connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    await channel.deleteExchange(exchange);
  } finally {
    await connection.close().catch(() => undefined);
  }
}

describe('conductor: queues and the events exchange deleted under it', () => {
  let held: HeldLock | undefined;
  const bed = conductorTestbed(['node-a', 'node-b', 'node-c'], {
    cleanup: async () => {
      await held?.release();
      held = undefined;
    },
  });
  const pool = bed.pool;

  it('declares each one again and loses no request: every one gets its final answer, dead letters included, and /status counts it', async () => {
    const c = bed.cell!;
    const t = c.topology;
    // The destination lock of BUSY, held as another conductor would: its requests fail LOCK_TIMEOUT and
    // go round the retry tiers (200, 500, 1000 ms) until the lock is given back at the end.
    const locks = new NodeLockManager({
      root: c.root,
      conductorId: 'test-holder',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500, pollMs: 25 },
    });
    held = await locks.acquire({ node: 'node-b', imageId: BUSY, mode: 'exclusive' }, { timeoutMs: 5_000 });
    await c.seed('node-a', BUSY, 64 * KiB);
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({
        CONDUCTOR_ID: 'topology-loss',
        LOCK_WAIT_MS: '400',
        MAX_ATTEMPTS: '100',
        COPY_CONCURRENCY: '8',
      }),
      170_000,
    ).ready();
    const admin = AdminHttp.of(conductor);

    const sent = new Map<string, { correlationId: string; kind: 'busy' | 'copy' | 'bad' }>();
    const deadLetters: DeadLetter[] = [];
    let batch = 0;
    /** One busy (retried) request, one plain copy and one that fails for good (dead-lettered). */
    const sendBatch = async () => {
      batch += 1;
      const image = `img-${batch}.qcow2`;
      await c.seed('node-a', image, 64 * KiB);
      const requests = [
        { kind: 'busy' as const, body: { imageId: BUSY, destination: 'node-b', source: 'node-a' } },
        { kind: 'copy' as const, body: { imageId: image, destination: 'node-c', source: 'node-a' } },
        {
          kind: 'bad' as const,
          body: { imageId: `ghost-${batch}.qcow2`, destination: 'node-c', source: 'node-a' },
        },
      ];
      for (const r of requests) {
        const requestId = `${r.kind}-${batch}`;
        const correlationId = bed.client!.send(
          t.requestQueue.name,
          { v: 1, requestId, ...r.body },
          { messageId: requestId },
        );
        sent.set(requestId, { correlationId, kind: r.kind });
      }
    };
    const retryableFailures = (requestId: string) =>
      bed.client!.replies.filter(
        (r) => r.correlationId === sent.get(requestId)!.correlationId && r.body.retryable === true,
      ).length;
    const redeclaredFor = (name: string) =>
      conductor.waitForLog(
        (l) => l.msg === 'topology declared again' && String(l.cause).includes(name),
        `the topology declared again after ${name} was deleted`,
        60_000,
      );

    /**
     * The plain copy and the bad request of the newest batch have their final answers, so that only busy
     * requests are left going round: under load a plain copy's first use of a lock key once outlasted
     * LOCK_WAIT_MS and was retried through a tier at the moment a queue was deleted.
     */
    const batchSettled = () =>
      waitFor(
        () =>
          [`copy-${batch}`, `bad-${batch}`].every((id) =>
            bed.client!.finals.has(sent.get(id)!.correlationId),
          ),
        `the final answers of batch ${batch}'s copy and bad request`,
        60_000,
      );

    // Requests in flight before anything is deleted; the busy one is going round the retry tiers.
    await sendBatch();
    await waitFor(() => retryableFailures('busy-1') >= 1, 'busy-1 retried once', 30_000);
    await batchSettled();
    // busy-1 has just failed again and is in a tier: the first time every queue then reads empty, the
    // conductor has just taken it back, and its next failure is LOCK_WAIT_MS (400 ms) away.
    const failuresBefore = retryableFailures('busy-1');
    await waitFor(() => retryableFailures('busy-1') > failuresBefore, 'busy-1 retried again', 30_000);

    const deleted: string[] = [];
    // The request queue first, under the running consumer (the broker cancels it), while the one busy
    // request so far is in the conductor's hands.
    await deleteRequestQueueWhileAllInFlight(
      t.requestQueue.name,
      t.retryQueues.map((q) => q.name),
    );
    deleted.push(t.requestQueue.name);
    await redeclaredFor(t.requestQueue.name);
    await waitFor(
      async () => (await admin.json<Status>('/status')).consumer.subscribed,
      'the consumer subscribed again',
      30_000,
    );
    await sendBatch();

    // The longest tier first: the busy request's third failure goes there.
    for (const tier of [...t.retryQueues].reverse()) {
      await batchSettled();
      await deleteWhenEmpty(tier.name);
      deleted.push(tier.name);
      await sendBatch(); // a fresh busy request passes every tier again
      await redeclaredFor(tier.name);
    }

    // The dead-letter queue (quorum: no if-empty): deleted once the dead letters of every failed request
    // so far were taken out of it (and kept for the check below); nothing else sends dead letters.
    const badSoFar = [...sent].filter(([, s]) => s.kind === 'bad').map(([id]) => id);
    await waitFor(
      async () => {
        deadLetters.push(...(await takeDeadLetters(t)));
        return badSoFar.every((id) => deadLetters.some((d) => d.messageId === id));
      },
      'the dead letters so far',
      30_000,
    );
    await withChannel((channel) => channel.deleteQueue(t.deadLetterQueue.name));
    deleted.push(t.deadLetterQueue.name);
    await sendBatch();
    await redeclaredFor(t.deadLetterQueue.name);

    // The events exchange: every result goes there first.
    await deleteExchange(t.eventsExchange.name);
    deleted.push(t.eventsExchange.name);
    await sendBatch();
    await redeclaredFor(t.eventsExchange.name);

    // Every busy request has been failing and retried; give the lock back so they can complete.
    await waitFor(
      () => [...sent].filter(([, s]) => s.kind === 'busy').every(([id]) => retryableFailures(id) >= 1),
      'every busy request retried',
      30_000,
    );
    await held.release();
    held = undefined;

    const finals = new Map<string, Record<string, unknown>>();
    await waitFor(
      () => [...sent.values()].every((s) => bed.client!.finals.has(s.correlationId)),
      'a final reply to every request',
      60_000,
    ).catch((error: Error) => {
      const missing = [...sent].filter(([, s]) => !bed.client!.finals.has(s.correlationId)).map(([id]) => id);
      throw new Error(`${error.message}; missing: ${missing.join(', ')}`);
    });
    for (const [requestId, s] of sent) finals.set(requestId, await bed.client!.finalReply(s.correlationId));
    for (const [requestId, s] of sent) {
      const final = finals.get(requestId)!;
      if (s.kind === 'bad')
        expect(final, requestId).toMatchObject({ requestId, status: 'failed', reason: 'SOURCE_MISSING' });
      // A copy whose first answer could not be published is done again: the image is then already there.
      else
        expect(final, requestId).toMatchObject({
          requestId,
          status: expect.stringMatching(/^(completed|already-present)$/),
        });
    }
    expect(Number(finals.get('busy-1')!.attempt)).toBeGreaterThanOrEqual(2);

    // Every dead letter is there (duplicates are allowed: at-least-once).
    const bad = [...sent].filter(([, s]) => s.kind === 'bad').map(([id]) => id);
    await waitFor(
      async () => {
        deadLetters.push(...(await takeDeadLetters(t)));
        return bad.every((id) => deadLetters.some((d) => d.messageId === id));
      },
      'a dead letter for every failed request',
      15_000,
    );

    const redeclared = conductor.logs().filter((l) => l.msg === 'topology declared again');
    const status = await admin.json<Status>('/status');
    expect(status.topology.redeclarations).toBe(redeclared.length);
    expect(status.topology.redeclarations).toBeGreaterThanOrEqual(deleted.length);
    expect(status.topology.lastCause).toBe(redeclared.at(-1)!.cause);
    expect(metricValue((await admin.get('/metrics')).text, 'icc_topology_redeclarations')).toBe(
      redeclared.length,
    );
    for (const name of deleted)
      expect(
        redeclared.some((l) => String(l.cause).includes(name)),
        name,
      ).toBe(true);
    // Per name, what was found missing; for a queue, the log says its messages are gone with it.
    for (const name of deleted) {
      // The names first: a name missing there fails with every name /status has (it failed once, in a
      // full run, on `undefined` alone, and which name it was is not known).
      expect(Object.keys(status.topology.missing), name).toContain(name);
      expect(status.topology.missing[name]!.redeclarations, name).toBeGreaterThanOrEqual(1);
      if (name !== t.eventsExchange.name)
        expect(
          conductor
            .logs()
            .some(
              (l) =>
                l.msg.startsWith('a queue was deleted: the messages it held are gone') && l.queue === name,
            ),
          `the loss of ${name} logged`,
        ).toBe(true);
    }
    expect(errorLines([conductor])).toEqual([]);
    console.log(
      `conductor-topology-loss: ${JSON.stringify({ requests: sent.size, deleted: deleted.length, redeclarations: status.topology.redeclarations, causes: redeclared.map((l) => l.cause) })}`,
    );
  }, 180_000);
});
