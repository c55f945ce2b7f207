import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeRun, pythonWithPika, runProcess } from './support/agent-cli';
import { ChildProcessPool, PROJECT_ROOT } from './support/child-processes';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile } from './support/image-store-fixtures';
import { AMQP_URL } from './support/rabbitmq';
import { TestCell } from './support/test-cell';
import { connect } from 'amqplib';
import { waitFor } from './support/async';

const MiB = 1024 * 1024;
const SCRIPT = path.join(PROJECT_ROOT, 'test', 'support', 'pika_publish.py');

/**
 * A second publisher in another language, written from docs/protocol.md only (Python, pika): if the
 * document leaves out something a client needs, this is where it shows.
 */
describe('a Python (pika) client following docs/protocol.md', () => {
  const pool = new ChildProcessPool<unknown>();
  let cell: TestCell;

  beforeEach(async () => {
    cell = await TestCell.create({ nodes: ['node-a', 'node-b'] });
  });
  afterEach(async () => {
    await pool.killAll();
    await cell.cleanup();
  });

  it('publishes a request, waits on its exclusive reply queue and gets the copy done', async () => {
    const python = await pythonWithPika();
    const image = await cell.seed('node-a', 'debian-12.qcow2', 6 * MiB);
    await ConductorProcess.start(pool, cell.conductorEnv()).ready();

    const args = [
      SCRIPT,
      '--amqp-url',
      AMQP_URL,
      '--cell',
      cell.cellId,
      '--image',
      'debian-12.qcow2',
      '--destination',
      'node-b',
      '--sha256',
      image.sha256,
      '--request-id',
      'py-req-1',
      '--timeout',
      '60',
    ];
    const run = await runProcess(python, args, { timeoutMs: 90_000 });
    const report = describeRun(args, run);
    expect(run.code, report).toBe(0);
    const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    expect(result, report).toMatchObject({
      v: 1,
      type: 'result',
      requestId: 'py-req-1',
      status: 'completed',
      source: 'node-a',
      destination: 'node-b',
      sha256: image.sha256,
      bytes: image.size,
    });
    expect(await sha256OfFile(cell.store.entries.imagePath('node-b', 'debian-12.qcow2'))).toBe(image.sha256);

    // A request the conductor refuses comes back as a final failed result, readable from Python too.
    const bad = [
      SCRIPT,
      '--amqp-url',
      AMQP_URL,
      '--cell',
      cell.cellId,
      '--image',
      'missing.img',
      '--destination',
      'node-b',
      '--timeout',
      '60',
    ];
    const failed = await runProcess(python, bad, { timeoutMs: 90_000 });
    expect(failed.code, describeRun(bad, failed)).toBe(0);
    expect(JSON.parse(failed.stdout.trim())).toMatchObject({
      status: 'failed',
      reason: 'SOURCE_MISSING',
      retryable: false,
    });
  });

  it('sends the request again after a silence (same requestId) and gets the answer a lost message never brought', async () => {
    const python = await pythonWithPika();
    const image = await cell.seed('node-a', 'lost.qcow2', 1 * MiB);
    // A conductor declares the cell's queues, then stops: the request waits in the queue, unanswered.
    const first = await ConductorProcess.start(pool, cell.conductorEnv({ CONDUCTOR_ID: 'pika-1' })).ready();
    first.signal('SIGTERM');
    await first.exited();
    const args = [
      SCRIPT,
      '--amqp-url',
      AMQP_URL,
      '--cell',
      cell.cellId,
      '--image',
      'lost.qcow2',
      '--destination',
      'node-b',
      '--source',
      'node-a',
      '--request-id',
      'py-lost',
      '--resend-after',
      '3',
      '--timeout',
      '60',
    ];
    const running = runProcess(python, args, { timeoutMs: 90_000 });
    // The message is lost, as with a queue deleted while it held it: purged before any conductor saw it
    // (a re-send already made by then is purged too; the client sends again after the next silence).
    const connection = await connect(AMQP_URL);
    try {
      const channel = await connection.createChannel();
      const queue = cell.topology.requestQueue.name;
      await waitFor(
        async () => (await channel.checkQueue(queue)).messageCount >= 1,
        'the request queued',
        30_000,
      );
      await channel.purgeQueue(queue);
    } finally {
      await connection.close();
    }
    await ConductorProcess.start(pool, cell.conductorEnv({ CONDUCTOR_ID: 'pika-2' })).ready();

    const run = await running;
    const report = describeRun(args, run);
    expect(run.code, report).toBe(0);
    expect(run.stderr, report).toContain('sending py-lost again');
    expect(JSON.parse(run.stdout.trim().split('\n').pop()!), report).toMatchObject({
      requestId: 'py-lost',
      status: 'completed',
      sha256: image.sha256,
    });
  });

  it('is told when the cell has no request queue (mandatory publish comes back unroutable)', async () => {
    const python = await pythonWithPika();
    const args = [
      SCRIPT,
      '--amqp-url',
      AMQP_URL,
      '--cell',
      `${cell.cellId}-none`,
      '--image',
      'x.img',
      '--destination',
      'node-b',
      '--timeout',
      '5',
    ];
    const run = await runProcess(python, args, { timeoutMs: 30_000 });
    expect(run.code, describeRun(args, run)).toBe(2);
    expect(run.stderr).toContain('Unroutable');
  });
});
