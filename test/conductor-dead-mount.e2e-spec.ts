import { describe, expect, it } from 'vitest';
import { AdminHttp } from './support/admin-http';
import { sleep, waitFor } from './support/async';
import { ConductorProcess } from './support/conductor-process';
import { SSHFS_NO_CACHE } from './support/loopback-sshfs';
import { sshfsTestbed } from './support/sshfs-testbed';

const KiB = 1024;

/**
 * A conductor whose network mount of CACHE_ROOT dies sees an empty folder at the same path, where every
 * node and image looks absent. Requests sent during the outage must get no final answer (UNKNOWN_NODE,
 * SOURCE_MISSING, RETRIES_EXHAUSTED would be lies: the cell still has them), and must complete once the
 * mount is made again, with no restart. A real sshfs mount through an sshd of the test's own, killed.
 */
describe('conductor: its CACHE_ROOT mount dies and comes back', () => {
  const { bed, mountCellRoot } = sshfsTestbed(['node-a', 'node-b'], 'dead-mount');

  it('answers nothing final during the outage, reports not ready, and completes the requests after', async () => {
    const c = bed.cell!;
    const client = bed.client!;
    const seeded = await Promise.all(
      ['img-0.raw', 'img-1.raw', 'img-2.raw'].map((id) => c.seed('node-a', id, 64 * KiB)),
    );
    const { sshfs, mnt } = await mountCellRoot();
    // MAX_ATTEMPTS 2 with 200/500/1000 ms tiers: counted retries would be used up well within the outage.
    const conductor = await ConductorProcess.start(
      bed.pool,
      c.conductorEnv({ CACHE_ROOT: mnt, CONDUCTOR_ID: 'dead-mount', MAX_ATTEMPTS: '2' }),
      150_000,
    ).ready(60_000);
    const admin = AdminHttp.of(conductor);
    const send = (requestId: string, imageId: string, source?: string) =>
      client.send(c.topology.requestQueue.name, {
        v: 1,
        requestId,
        imageId,
        destination: 'node-b',
        ...(source ? { source } : {}),
      });
    expect(await client.finalReply(send('req-before', 'img-0.raw'), 30_000)).toMatchObject({
      status: 'completed',
    });
    expect((await admin.get('/health/ready')).status).toBe(200);

    await sshfs.kill(mnt);
    const during = [send('req-named', 'img-1.raw', 'node-a'), send('req-chosen', 'img-2.raw')];
    await waitFor(
      () => during.every((id) => client.replies.some((r) => r.correlationId === id)),
      'an answer to each request sent during the outage',
      30_000,
    );
    // Longer than every retry tier, several times: counted attempts would have ended in a final answer.
    await sleep(4_000);
    for (const id of during) {
      const answers = client.replies.filter((r) => r.correlationId === id).map((r) => r.body);
      expect(
        answers.filter((a) => a.status !== 'failed' || a.retryable !== true),
        `final answers during the outage for ${id}`,
      ).toEqual([]);
      expect(answers.length, id).toBeGreaterThan(1);
      expect(answers.every((a) => a.reason === 'CACHE_UNAVAILABLE' && a.attempt === 1)).toBe(true);
    }
    expect(conductor.logs().filter((l) => l.msg.startsWith('CACHE_ROOT unavailable'))).toHaveLength(1);
    const notReady = await admin.get('/health/ready');
    expect(notReady.status).toBe(503);
    expect(notReady.text).toContain('cellFolder');

    await sshfs.mount(c.root, mnt, SSHFS_NO_CACHE);
    for (const [i, id] of during.entries())
      expect(await client.finalReply(id, 30_000)).toMatchObject({
        status: 'completed',
        sha256: seeded[i + 1]!.sha256,
      });
    await conductor.waitForLog((l) => l.msg === 'CACHE_ROOT available again', 'the recovery logged', 10_000);
    await waitFor(async () => (await admin.get('/health/ready')).status === 200, 'ready again', 10_000);
    const outage = conductor.logs().filter((l) => l.reason === 'CACHE_UNAVAILABLE').length;
    console.log(`conductor-dead-mount: ${JSON.stringify({ cacheUnavailableRetries: outage })}`);
    conductor.signal('SIGTERM');
    expect((await conductor.exited()).code).toBe(0);
  });
});
