import { describe, expect, it } from 'vitest';
import { NodeLockManager } from '@app/locking';
import { AdminHttp, metricValue } from './support/admin-http';
import { conductorTestbed } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { usePrivateBroker } from './support/private-broker';
import { waitFor } from './support/async';
import { RawAmqpClient } from './support/raw-amqp-client';

const KiB = 1024;

interface Status {
  broker: { state: string; blocked: boolean; blockedReason: string | null; blockedSince: string | null };
  inFlight: { requestIds: string[]; phase: string }[];
}

/**
 * A memory alarm on a RabbitMQ node of the test's own (never the shared one): the broker stops reading
 * from publishing connections, so the conductor can send no answer.
 */
describe('conductor: broker blocked by a memory alarm', () => {
  const privateBroker = usePrivateBroker();
  const bed = conductorTestbed(['node-a', 'node-b']);

  it('/status answers from memory and shows blocked, readiness is 503, and work resumes once the alarm is lifted', async () => {
    const broker = await privateBroker();
    const c = bed.cell!;
    for (const n of [1, 2]) await c.seed('node-a', `img-${n}.qcow2`, 64 * KiB);
    const client = await RawAmqpClient.open(broker.url);
    try {
      const conductor = await ConductorProcess.start(
        bed.pool,
        c.conductorEnv({ CONDUCTOR_ID: 'blocked', AMQP_URL: broker.url, LOCK_WAIT_MS: '60000' }),
        110_000,
      ).ready(60_000);
      const admin = AdminHttp.of(conductor);
      const request = (n: number) =>
        client.send(c.topology.requestQueue.name, {
          v: 1,
          requestId: `req-${n}`,
          imageId: `img-${n}.qcow2`,
          destination: 'node-b',
          source: 'node-a',
        });
      // One answer first: RabbitMQ blocks connections that publish.
      expect(await client.finalReply(request(1), 30_000)).toMatchObject({ status: 'completed' });
      expect((await admin.get('/health/ready')).status).toBe(200);

      // RabbitMQ blocks a connection when it next publishes (and reads nothing from it from then on): the
      // conductor's next publish is req-2's progress and answer, held up by a lock until the alarm is on.
      const locks = new NodeLockManager({
        root: c.root,
        conductorId: 'test-holder',
        timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500, pollMs: 25 },
      });
      const held = await locks.acquire(
        { node: 'node-b', imageId: 'img-2.qcow2', mode: 'exclusive' },
        { timeoutMs: 5_000 },
      );
      const waiting = request(2);
      await waitFor(
        async () =>
          (await admin.json<Status>('/status')).inFlight.some(
            (f) => f.requestIds.includes('req-2') && f.phase === 'waiting-for-lock',
          ),
        'req-2 waiting for its lock',
        30_000,
      );
      await broker.ctl(['set_vm_memory_high_watermark', '0.0000001']);
      await held.release();
      const blocked = await waitFor(
        async () => {
          // A client timeout, not a timing assertion: before the fix this request never got an answer.
          const answer = await admin.get('/status', { timeoutMs: 5_000 });
          expect(answer.status).toBe(200);
          const status = answer.json<Status>();
          return status.broker.blocked ? status : undefined;
        },
        '/status to show the connection blocked',
        30_000,
      );
      expect(blocked!.broker).toMatchObject({
        state: 'connected',
        blocked: true,
        blockedReason: expect.stringMatching(/memory/i),
      });
      // Asked twice more while blocked: answered each time, from memory.
      for (let i = 0; i < 2; i++)
        expect((await admin.get('/status', { timeoutMs: 5_000 })).json<Status>().broker.blocked).toBe(true);
      expect(
        metricValue((await admin.get('/metrics', { timeoutMs: 5_000 })).text, 'icc_broker_blocked'),
      ).toBe(1);
      const ready = await admin.get('/health/ready', { timeoutMs: 5_000 });
      expect(ready.status).toBe(503);
      expect(ready.text).toContain('"blocked":true');

      expect(client.finals.has(waiting)).toBe(false); // no answer can get out while blocked

      await broker.ctl(['set_vm_memory_high_watermark', '0.4']);
      expect(await client.finalReply(waiting, 60_000)).toMatchObject({
        requestId: 'req-2',
        status: 'completed',
      });
      await waitFor(
        async () => (await admin.get('/health/ready', { timeoutMs: 5_000 })).status === 200,
        'ready again',
        30_000,
      );
      expect((await admin.json<Status>('/status')).broker.blocked).toBe(false);
    } finally {
      await client.close();
    }
  }, 170_000);
});
