import { promises as fsp } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChildProcessPool } from './support/child-processes';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile } from './support/image-store-fixtures';
import { RawAmqpClient } from './support/raw-amqp-client';
import { TestCell } from './support/test-cell';

const MiB = 1024 * 1024;

describe('conductor: one request end to end', () => {
  const pool = new ChildProcessPool<unknown>();
  let cell: TestCell;
  let client: RawAmqpClient;

  beforeEach(async () => {
    cell = await TestCell.create({ nodes: ['node-a', 'node-b'] });
    client = await RawAmqpClient.open();
  });
  afterEach(async () => {
    await client.close();
    await pool.killAll();
    await cell.cleanup();
  });

  it('copies a request published as raw JSON by a plain amqplib client and answers on reply_to', async () => {
    const image = await cell.seed('node-a', 'ubuntu-24.04.qcow2', 8 * MiB);
    await ConductorProcess.start(pool, cell.conductorEnv()).ready();
    const correlationId = client.send(cell.topology.requestQueue.name, {
      v: 1,
      requestId: 'req-1',
      imageId: 'ubuntu-24.04.qcow2',
      destination: 'node-b',
      source: 'node-a',
      sha256: image.sha256,
    });
    const reply = await client.finalReply(correlationId);
    expect(reply).toMatchObject({
      type: 'result',
      requestId: 'req-1',
      status: 'completed',
      source: 'node-a',
      destination: 'node-b',
      bytes: image.size,
      sha256: image.sha256,
    });
    expect(await sha256OfFile(cell.store.entries.imagePath('node-b', 'ubuntu-24.04.qcow2'))).toBe(
      image.sha256,
    );
    expect(await cell.tmpLeftovers()).toEqual([]);

    // The same image and destination again, under a new request id: a no-op, answered already-present.
    // (The same request id again gets its first answer again: test/request-first-answer.)
    const again = client.send(cell.topology.requestQueue.name, {
      v: 1,
      requestId: 'req-2',
      imageId: 'ubuntu-24.04.qcow2',
      destination: 'node-b',
    });
    expect(await client.finalReply(again)).toMatchObject({ status: 'already-present', requestId: 'req-2' });
    const stat = await fsp.stat(cell.store.entries.imagePath('node-b', 'ubuntu-24.04.qcow2'));
    expect(stat.size).toBe(image.size);
  });
});
