import { type AddressInfo, type Socket, connect as tcpConnect, createServer } from 'node:net';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import { ChildProcessPool } from './support/child-processes';
import { type CliRun, describeRun, expectAnsweredAfterResend, runIcc } from './support/agent-cli';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile, writeRandomFile } from './support/image-store-fixtures';
import { AdminHttp } from './support/admin-http';
import { until } from './support/async';
import {
  AMQP_URL,
  closeConnectionsNamed,
  connectionPidsNamed,
  queueMessageCount,
  requireRabbitMq,
  uniqueCellId,
} from './support/rabbitmq';
import { makeTempDir, removeDir } from './support/temp-dirs';
import { TestCell } from './support/test-cell';

const MiB = 1024 * 1024;
const EXIT = { OK: 0, USAGE: 2, FAILED: 3, TIMED_OUT: 4, UNREACHABLE: 5 } as const;

/** Runs the built CLI and checks its exit code, printing everything it said when the check fails. */
async function icc(args: string[], expectedCode: number, env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  const run = await runIcc(args, { env: { AMQP_URL, ...env } });
  expect(run.code, describeRun(args, run)).toBe(expectedCode);
  return run;
}

describe('icc copy / cache ls / status against a real conductor', () => {
  const pool = new ChildProcessPool<unknown>();
  let cell: TestCell;
  let conductor: ConductorProcess;

  beforeEach(async () => {
    cell = await TestCell.create({ nodes: ['node-a', 'node-b', 'node-c'] });
    conductor = await ConductorProcess.start(pool, cell.conductorEnv()).ready();
  });
  afterEach(async () => {
    await pool.killAll();
    await cell.cleanup();
  });

  it('copy --wait completes (exit 0, image verifies); the same copy again is already-present; --json parses; cache ls lists it', async () => {
    const image = await cell.seed('node-a', 'ubuntu-24.04.qcow2', 12 * MiB);
    const waited = await icc(
      [
        'copy',
        'ubuntu-24.04.qcow2',
        '--to',
        'node-b',
        '--from',
        'node-a',
        '--sha256',
        image.sha256,
        '--size',
        String(image.size),
        '--cell',
        cell.cellId,
        '--wait',
        '--timeout',
        '60',
      ],
      EXIT.OK,
    );
    expect(waited.stdout).toMatch(/^completed: ubuntu-24\.04\.qcow2 copied node-a -> node-b/m);
    expect(await sha256OfFile(cell.store.entries.imagePath('node-b', 'ubuntu-24.04.qcow2'))).toBe(
      image.sha256,
    );

    // No source given, CELL_ID from the environment, --json: exactly one JSON object on stdout, no bar.
    const json = await icc(
      ['copy', 'ubuntu-24.04.qcow2', '--to', 'node-c', '--wait', '--json', '--request-id', 'json-1'],
      EXIT.OK,
      { CELL_ID: cell.cellId },
    );
    const result = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(result).toMatchObject({
      v: 1,
      type: 'result',
      requestId: 'json-1',
      status: 'completed',
      destination: 'node-c',
      sha256: image.sha256,
      bytes: image.size,
    });
    expect(await sha256OfFile(cell.store.entries.imagePath('node-c', 'ubuntu-24.04.qcow2'))).toBe(
      image.sha256,
    );

    const again = await icc(
      ['copy', 'ubuntu-24.04.qcow2', '--to', 'node-b', '--cell', cell.cellId, '--wait', '--json'],
      EXIT.OK,
    );
    expect(JSON.parse(again.stdout)).toMatchObject({ status: 'already-present', destination: 'node-b' });

    const listing = await icc(['cache', 'ls', 'node-b', '--cache-root', cell.root], EXIT.OK);
    expect(listing.stdout).toContain('ubuntu-24.04.qcow2');
    expect(listing.stdout).toContain('12.0 MiB');
    expect(listing.stdout).toContain(image.sha256.slice(0, 12));
    const listed = JSON.parse(
      (await icc(['cache', 'ls', 'node-b', '--json'], EXIT.OK, { CACHE_ROOT: cell.root })).stdout,
    ) as { images: { imageId: string; sha256: string; locks: unknown[] }[] };
    expect(listed.images).toEqual([
      expect.objectContaining({ imageId: 'ubuntu-24.04.qcow2', sha256: image.sha256, locks: [] }),
    ]);

    await icc(['cache', 'ls', 'node-zz', '--cache-root', cell.root], EXIT.USAGE);
  });

  it('a missing image exits with the failed code and a readable reason', async () => {
    const run = await icc(
      ['copy', 'no-such-image.qcow2', '--to', 'node-b', '--cell', cell.cellId, '--wait'],
      EXIT.FAILED,
    );
    expect(run.stderr).toMatch(/failed: SOURCE_MISSING: .*no-such-image\.qcow2/);
    const json = await icc(
      [
        'copy',
        'no-such-image.qcow2',
        '--to',
        'node-b',
        '--from',
        'node-a',
        '--cell',
        cell.cellId,
        '--wait',
        '--json',
      ],
      EXIT.FAILED,
    );
    expect(JSON.parse(json.stdout)).toMatchObject({
      status: 'failed',
      reason: 'SOURCE_MISSING',
      retryable: false,
    });
  });

  it('without --wait publishes and exits 0; the conductor still does the copy', async () => {
    const image = await cell.seed('node-a', 'alpine.img', 2 * MiB);
    const run = await icc(
      ['copy', 'alpine.img', '--to', 'node-b', '--cell', cell.cellId, '--request-id', 'fire-and-forget'],
      EXIT.OK,
    );
    expect(run.stdout).toContain('published request fire-and-forget');
    await conductor.waitForLog(
      (l) => l.msg === 'copy request answered' && l.requestId === 'fire-and-forget',
      'the answer',
    );
    expect(await sha256OfFile(cell.store.entries.imagePath('node-b', 'alpine.img'))).toBe(image.sha256);
  });

  it('--timeout without a final result exits 4', async () => {
    // A conductor that is not consuming: nothing answers.
    await pool.killAll();
    const run = await icc(
      ['copy', 'x.img', '--to', 'node-b', '--cell', cell.cellId, '--wait', '--timeout', '1.5', '--json'],
      EXIT.TIMED_OUT,
    );
    expect(JSON.parse(run.stdout)).toMatchObject({ status: 'timed-out', exitCode: 4 });
    expect(run.stderr).toContain('no final result within 1.5 s');
  });

  it('shows a retried attempt as "attempt N failed (REASON), retrying" and waits for the final result', async () => {
    await pool.killAll();
    const image = await cell.seed('node-a', 'busy.img', 2 * MiB);
    // The destination lock is held elsewhere: the first attempts fail with the retryable LOCK_TIMEOUT.
    const blocker = new NodeLockManager({
      root: cell.root,
      conductorId: 'blocker',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500 },
    });
    await blocker.acquire({ node: 'node-b', imageId: 'busy.img', mode: 'exclusive' }, { timeoutMs: 5_000 });
    const conductor = await ConductorProcess.start(pool, cell.conductorEnv({ LOCK_WAIT_MS: '300' })).ready();
    try {
      const running = icc(
        ['copy', 'busy.img', '--to', 'node-b', '--cell', cell.cellId, '--wait', '--timeout', '60'],
        EXIT.OK,
      );
      // Freed once the first attempt has failed (not after a fixed time: the CLI may start slowly).
      await conductor.waitForLog((l) => l.msg === 'copy failed, retry scheduled', 'a retry', 30_000);
      await blocker.releaseAll();
      const run = await running;
      expect(run.stderr, run.stderr).toMatch(/attempt 1 failed \(LOCK_TIMEOUT\), retrying - waited 300 ms/);
      expect(run.stdout).toMatch(/^completed: busy\.img/m);
      expect(await sha256OfFile(cell.store.entries.imagePath('node-b', 'busy.img'))).toBe(image.sha256);
    } finally {
      await blocker.releaseAll();
    }
  });

  it('survives losing its broker connection while waiting: reconnects, sends the request again, exits 0', async () => {
    await pool.killAll();
    const image = await cell.seed('node-a', 'cut.img', 2 * MiB);
    // The destination lock is held elsewhere, so the copy is still waiting when the CLI's connection is cut.
    const blocker = new NodeLockManager({
      root: cell.root,
      conductorId: 'blocker',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500 },
    });
    await blocker.acquire({ node: 'node-b', imageId: 'cut.img', mode: 'exclusive' }, { timeoutMs: 5_000 });
    const conductor = await ConductorProcess.start(
      pool,
      cell.conductorEnv({ LOCK_WAIT_MS: '60000' }),
    ).ready();
    const args = ['copy', 'cut.img', '--to', 'node-b', '--cell', cell.cellId, '--wait', '--timeout', '60'];
    let pid: number | undefined;
    try {
      const running = runIcc(args, { env: { AMQP_URL }, onSpawn: (p) => (pid = p) });
      await until(
        async () =>
          (await AdminHttp.of(conductor).json<{ inFlight: { phase: string }[] }>('/status')).inFlight.some(
            (c) => c.phase === 'waiting-for-lock',
          ),
        'the copy waiting for the destination lock',
        30_000,
      );
      const name = `icc-copy-${os.hostname().replace(/[^A-Za-z0-9._-]/g, '-')}-${pid}`;
      await closeConnectionsNamed(name, 'cut by the test');
      await until(
        async () => (await connectionPidsNamed(name)).length === 1,
        'the CLI connected again',
        30_000,
      );
      await blocker.releaseAll();
      const run = await running;
      expectAnsweredAfterResend(args, run);
      expect(await sha256OfFile(cell.store.entries.imagePath('node-b', 'cut.img'))).toBe(image.sha256);
    } finally {
      await blocker.releaseAll();
    }
  });

  it('exits 5 when the broker stays out of reach after a loss until --timeout ends', async () => {
    // Declare the cell, then leave it without a consumer: the request waits in the queue, unanswered.
    await pool.killAll();
    await ConductorProcess.start(pool, cell.conductorEnv()).ready();
    await pool.killAll();
    // The CLI reaches RabbitMQ through a TCP relay that the test then takes away for good.
    const sockets = new Set<Socket>();
    const relay = createServer((client) => {
      const broker = tcpConnect(Number(new URL(AMQP_URL).port || 5672), '127.0.0.1');
      for (const s of [client, broker]) {
        sockets.add(s);
        s.on('error', () => s.destroy());
        s.on('close', () => sockets.delete(s));
      }
      client.pipe(broker).pipe(client);
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const url = `amqp://guest:guest@127.0.0.1:${(relay.address() as AddressInfo).port}`;
    const queue = cell.topology.requestQueue.name;
    const before = await queueMessageCount(queue);
    const args = [
      'copy',
      'relay-gone.img',
      '--to',
      'node-b',
      '--cell',
      cell.cellId,
      '--wait',
      '--timeout',
      '4',
    ];
    const running = runIcc(args, { env: { AMQP_URL: url } });
    await until(async () => (await queueMessageCount(queue)) > before, 'the request published', 20_000);
    relay.close();
    for (const s of sockets) s.destroy();
    const run = await running;
    expect(run.code, describeRun(args, run)).toBe(EXIT.UNREACHABLE);
    expect(run.stderr).toMatch(/lost the connection to RabbitMQ .*reconnecting/);
    expect(run.stderr).toMatch(/could not reconnect within 4 s; the request was published/);
  });

  it('status shows the conductor as tables, --json raw', async () => {
    const url = `http://127.0.0.1:${conductor.adminPort()}`;
    const run = await icc(['status', '--url', url], EXIT.OK);
    expect(run.stdout).toContain(cell.cellId);
    expect(run.stdout).toContain(cell.topology.requestQueue.name);
    const raw = JSON.parse((await icc(['status', '--json'], EXIT.OK, { ADMIN_URL: url })).stdout) as Record<
      string,
      unknown
    >;
    expect(raw).toHaveProperty('conductorId');
  });
});

describe('icc status with an admin token', () => {
  const pool = new ChildProcessPool<unknown>();
  let cell: TestCell;

  beforeAll(async () => {
    cell = await TestCell.create({ nodes: ['node-a'] });
  });
  afterAll(async () => {
    await pool.killAll();
    await cell.cleanup();
  });

  it('a missing or wrong token exits 2 "token missing or wrong"; the right one works', async () => {
    const token = 'test-token-0123456789abcdef';
    const conductor = await ConductorProcess.start(
      pool,
      cell.conductorEnv({ ADMIN_TOKEN: token, ADMIN_HOST: '127.0.0.1' }),
    ).ready();
    const url = `http://127.0.0.1:${conductor.adminPort()}`;
    const missing = await icc(['status', '--url', url], EXIT.USAGE, { ADMIN_TOKEN: '' });
    expect(missing.stderr).toContain('token missing or wrong');
    const wrong = await icc(['status', '--url', url, '--token', 'not-the-token-at-all'], EXIT.USAGE);
    expect(wrong.stderr).toContain('token missing or wrong');
    await icc(['status', '--url', url], EXIT.OK, { ADMIN_TOKEN: token });
  });
});

describe('icc: usage errors and unreachable services', () => {
  beforeAll(async () => {
    await requireRabbitMq();
  });

  it.each([
    [['copy', 'img.qcow2', '--to', '../x', '--cell', 'c1'], '--to'],
    [['copy', 'img.qcow2', '--to', 'node-b', '--sha256', 'xyz', '--cell', 'c1'], '--sha256'],
    [['copy', 'img.qcow2', '--to', 'node-b', '--size', '12kb', '--cell', 'c1'], '--size'],
    [['copy', 'img.qcow2', '--to', 'node-b', '--from', 'node-b', '--cell', 'c1'], '--from'],
    [['copy', 'img.qcow2', '--to', 'node-b', '--cell', 'bad/cell'], '--cell'],
    [['copy', 'img.qcow2', '--to', 'node-b', '--cell', 'c1', '--timeout', '-3', '--wait'], '--timeout'],
    [['copy', 'img.qcow2', '--to', 'node-b', '--cell', 'c1', '--amqp-url', 'http://127.0.0.1'], '--amqp-url'],
    [['copy', 'img.qcow2', '--to', 'node-b', '--bogus'], '--bogus'],
    [['copy', 'img.qcow2', '--cell', 'c1'], '--to'],
    [['copy', 'a..b', '--to', 'node-b', '--cell', 'c1'], '<imageId>'],
    [['cache', 'ls', '../etc', '--cache-root', '/tmp'], '<node>'],
    [['status', '--url', 'ftp://x'], '--url'],
    [['demo', '--big-image-mib', 'lots'], '--big-image-mib'],
  ])('%j exits 2 naming %s', async (args, flag) => {
    const run = await icc(args, EXIT.USAGE, { CELL_ID: '' });
    expect(run.stderr).toContain(flag);
    expect(run.stdout).toBe('');
  });

  it('the cell id is required (flag or CELL_ID)', async () => {
    const run = await icc(['copy', 'img.qcow2', '--to', 'node-b'], EXIT.USAGE, { CELL_ID: '' });
    expect(run.stderr).toContain('--cell');
  });

  it('--help documents the exit codes and exits 0', async () => {
    const run = await icc(['copy', '--help'], EXIT.OK);
    expect(run.stdout).toContain('Exit codes:');
    expect(run.stdout).toMatch(/4\s+timed out/);
  });

  it('a broker that is down exits 5 quickly, saying how to start RabbitMQ', async () => {
    // An hour of --timeout: exit 5 (not 4, not the harness's SIGKILL) shows it gave up on the broker
    // instead of waiting out the timeout, with no bound on how fast this machine is.
    const run = await icc(
      ['copy', 'img.qcow2', '--to', 'node-b', '--cell', 'c1', '--wait', '--timeout', '3600'],
      EXIT.UNREACHABLE,
      { AMQP_URL: 'amqp://guest:guest@127.0.0.1:1' },
    );
    expect(run.stderr).toContain('rabbitmq-server -detached');
    expect(run.stderr).toContain('AMQP_URL');
    expect(run.stderr).not.toContain('guest:guest'); // the password is redacted
    const demo = await icc(['demo', '--amqp-url', 'amqp://127.0.0.1:1'], EXIT.UNREACHABLE);
    expect(demo.stderr).toContain('rabbitmq-server -detached');
  });

  it('a cell without a request queue exits 5 instead of dropping the request', async () => {
    const run = await icc(
      ['copy', 'img.qcow2', '--to', 'node-b', '--cell', uniqueCellId('nocell'), '--wait'],
      EXIT.UNREACHABLE,
    );
    expect(run.stderr).toMatch(/no queue icc\.nocell-\w+\.requests/);
  });

  it('an admin endpoint that is not listening exits 5', async () => {
    // A port that was free a moment ago (fetch refuses "bad ports" such as 9 before even trying).
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const run = await icc(['status', '--url', `http://127.0.0.1:${port}`], EXIT.UNREACHABLE);
    expect(run.stderr).toContain('connection refused');
  });
});

describe('icc cache ls shows who holds locks', () => {
  let root: string;
  let locks: NodeLockManager | undefined;

  beforeEach(async () => {
    root = await makeTempDir('agent-cache');
  });
  afterEach(async () => {
    await locks?.releaseAll();
    await removeDir(root);
  });

  it('lists the exclusive holder, shared readers and images not yet cached', async () => {
    const store = new ImageStore({ root, fsync: false });
    await store.markers.registerNode('node-a', 'agent-copy');
    const seed = path.join(root, 'seed');
    const sha256 = await writeRandomFile(seed, 3 * MiB);
    await store.imports.importImage('node-a', 'cached.img', seed);
    await fsp.rm(seed);
    locks = new NodeLockManager({ root, conductorId: 'cond-7', timings: { staleMs: 20_000 } });
    await locks.acquire(
      { node: 'node-a', imageId: 'cached.img', mode: 'shared' },
      { timeoutMs: 5_000, attemptId: 'reader-1' },
    );
    await locks.acquire(
      { node: 'node-a', imageId: 'incoming.img', mode: 'exclusive' },
      { timeoutMs: 5_000, attemptId: 'writer-1' },
    );

    const run = await icc(['cache', 'ls', 'node-a', '--cache-root', root], EXIT.OK);
    expect(run.stdout).toContain(sha256.slice(0, 12));
    expect(run.stdout).toMatch(/cached\.img[^\n]*shared cond-7\/reader-1/);
    expect(run.stdout).toMatch(
      /not \(yet\) in this cache[^]*incoming\.img[^\n]*exclusive cond-7\/writer-1 g-\d+/,
    );
    const listed = JSON.parse(
      (await icc(['cache', 'ls', 'node-a', '--cache-root', root, '--json'], EXIT.OK)).stdout,
    ) as {
      images: { imageId: string; locks: { mode: string; holder: { attemptId: string } }[] }[];
      otherLocks: { imageId: string; locks: { mode: string; liveness: string }[] }[];
    };
    expect(listed.images[0]!.locks).toEqual([
      expect.objectContaining({ mode: 'shared', holder: expect.objectContaining({ attemptId: 'reader-1' }) }),
    ]);
    expect(listed.otherLocks).toEqual([
      { imageId: 'incoming.img', locks: [expect.objectContaining({ mode: 'exclusive', liveness: 'live' })] },
    ]);

    await locks.releaseAll();
    const after = await icc(['cache', 'ls', 'node-a', '--cache-root', root], EXIT.OK);
    expect(after.stdout).not.toContain('reader-1');
    expect(after.stdout).not.toContain('incoming.img');
  });
});
