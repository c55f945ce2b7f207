import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NodeLockManager } from '@app/locking';
import { AdminHttp } from './support/admin-http';
import { until } from './support/async';
import { describeRun, expectAnsweredAfterResend, runIcc } from './support/agent-cli';
import { ChildProcessPool } from './support/child-processes';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile } from './support/image-store-fixtures';
import { freePort } from './support/free-port';
import { PrivateBroker } from './support/private-broker';
import { TestCell } from './support/test-cell';

const MiB = 1024 * 1024;
const EXIT_OK = 0;

interface Status {
  broker: {
    connected: boolean;
    reconnects: number;
    endpoint: { url: string | null; address: string | null; position: number | null; brokers: number };
  };
  inFlight: { phase: string }[];
}

/** `icc copy <image> --to node-b --wait` in `cell`. */
const copyArgs = (cell: TestCell, imageId: string, timeoutS: number) =>
  `copy ${imageId} --to node-b --cell ${cell.cellId} --wait --timeout ${timeoutS}`.split(' ');

/**
 * Fail-over over a broker list: two single-node private brokers (not a cluster: what is in the queues of
 * a stopped one is gone, so what is tested is that both programs move on and the requester's resend
 * makes up for it) behind a first entry where nothing listens.
 */
describe('a broker list: the first that answers, the next one on loss', () => {
  const pool = new ChildProcessPool<unknown>();
  const brokers: PrivateBroker[] = [];
  let list: string;
  let cell: TestCell;

  beforeAll(async () => {
    brokers.push(...(await Promise.all([PrivateBroker.start(), PrivateBroker.start()])));
    list = [`amqp://guest:guest@127.0.0.1:${await freePort()}`, brokers[0]!.url, brokers[1]!.url].join(',');
  }, 240_000);
  afterEach(async () => {
    await pool.killAll();
    await cell?.cleanup();
  });
  afterAll(async () => {
    for (const broker of brokers) await broker.stop();
  }, 120_000);

  it('connects past a dead first entry; when its broker stops, the conductor and icc copy --wait go on on the next, icc there first', async () => {
    cell = await TestCell.create({ nodes: ['node-a', 'node-b'] });
    const [first, second] = brokers as [PrivateBroker, PrivateBroker];
    const conductor = await ConductorProcess.start(
      pool,
      cell.conductorEnv({ AMQP_URL: list, LOCK_WAIT_MS: '120000' }),
    ).ready(60_000);
    const admin = AdminHttp.of(conductor);
    const before = (await admin.json<Status>('/status')).broker;
    expect(before.connected).toBe(true);
    expect(before.endpoint).toMatchObject({
      url: `amqp://guest:***@127.0.0.1:${first.amqpPort}`,
      address: `127.0.0.1:${first.amqpPort}`,
      position: 2,
      brokers: 3,
    });

    // A copy that cannot finish yet (the destination lock is held here), so it is in flight when the
    // broker both programs are on goes away.
    const image = await cell.seed('node-a', 'failover.img', 2 * MiB);
    const blocker = new NodeLockManager({
      root: cell.root,
      conductorId: 'blocker',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500 },
    });
    await blocker.acquire(
      { node: 'node-b', imageId: 'failover.img', mode: 'exclusive' },
      { timeoutMs: 5_000 },
    );
    const args = copyArgs(cell, 'failover.img', 120);
    let iccStderr = '';
    try {
      const running = runIcc(args, {
        env: { AMQP_URL: list },
        timeoutMs: 180_000,
        onStderr: (soFar) => (iccStderr = soFar),
      });
      await until(
        async () =>
          (await admin.json<Status>('/status')).inFlight.some((c) => c.phase === 'waiting-for-lock'),
        'the copy waiting for the destination lock',
        30_000,
      );
      // The bad interleaving, every time: icc reaches the next broker before any conductor has declared
      // the cell's queues and exchange there (the conductor is paused meanwhile). icc must wait for them,
      // not give up on its request.
      process.kill(conductor.pid, 'SIGSTOP');
      try {
        await first.stop();
        await until(
          async () => /has no queue \S+ there yet .*sending again/.test(iccStderr),
          'icc on the next broker, sending its request again until a conductor declares the queue there',
          60_000,
        );
      } finally {
        process.kill(conductor.pid, 'SIGCONT');
      }
      const after = await until(
        async () => {
          const broker = (await admin.json<Status>('/status')).broker;
          return broker.connected && broker.endpoint.position === 3 ? broker : undefined;
        },
        'the conductor connected to the second broker',
        60_000,
      );
      expect(after.endpoint.address).toBe(`127.0.0.1:${second.amqpPort}`);
      expect(after.reconnects).toBeGreaterThanOrEqual(1);
      // A figure for the record, not an assertion: from the loss to the next broker, in the conductor's log.
      const logs = conductor.logs();
      const lostAt = logs.find((l) => l.msg === 'lost the RabbitMQ connection')?.time;
      const backAt = logs.find((l) => l.msg === 'connected to RabbitMQ' && Number(l.reconnects) >= 1)?.time;
      console.log(
        `broker-failover: conductor on the next broker ${Number(backAt) - Number(lostAt)} ms after losing its own`,
      );
      await blocker.releaseAll();
      const run = await running;
      expectAnsweredAfterResend(args, run);
      expect(await sha256OfFile(cell.store.entries.imagePath('node-b', 'failover.img'))).toBe(image.sha256);
    } finally {
      await blocker.releaseAll();
    }

    // With two dead entries ahead of it, a new icc finds the broker that is left.
    await cell.seed('node-a', 'after.img', MiB);
    const fresh = copyArgs(cell, 'after.img', 60);
    const run = await runIcc(fresh, { env: { AMQP_URL: list } });
    expect(run.code, describeRun(fresh, run)).toBe(EXIT_OK);
    expect(run.stdout).toMatch(/^completed: after\.img/m);
  }, 300_000);

  it('refuses to start on a bad list entry, naming it (password masked)', async () => {
    cell = await TestCell.create({ nodes: ['node-a'] });
    const conductor = ConductorProcess.start(
      pool,
      cell.conductorEnv({ AMQP_URL: `${brokers[1]!.url},amqp:/guest:s3cret@127.0.0.1:5672` }),
    );
    const exit = await conductor.exited();
    const output = conductor.child.output.join('');
    expect(exit, output).not.toEqual({ code: 0, signal: null });
    expect(output).toContain('AMQP_URL=');
    expect(output).toContain(
      'entry 2 ("amqp:/guest:***@127.0.0.1:5672"): must start with amqp:// or amqps://',
    );
    expect(output).not.toContain('s3cret');

    const args = [
      'copy',
      'x.img',
      '--to',
      'node-a',
      '--cell',
      cell.cellId,
      '--amqp-url',
      `${brokers[1]!.url},,x`,
    ];
    const run = await runIcc(args);
    expect(run.code, describeRun(args, run)).toBe(2);
    expect(run.stderr).toMatch(/--amqp-url: entry 2 \(""\): is empty/);
  }, 120_000);
});
