import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { answersLogged, conductorPool, errorLines } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile } from './support/image-store-fixtures';
import { waitFor } from './support/async';
import { RawAmqpClient } from './support/raw-amqp-client';
import { TestCell } from './support/test-cell';

const MiB = 1024 * 1024;
const IMAGE = 'resume.qcow2';
const SIZE = 512 * MiB;

describe('conductor: a copy SIGKILLed half-way is resumed by the next conductor', () => {
  let cell: TestCell | undefined;
  let client: RawAmqpClient | undefined;
  const pool = conductorPool(async () => {
    await client?.close();
    await cell?.cleanup();
  });

  beforeEach(async () => {
    cell = await TestCell.create({ nodes: ['node-a', 'node-b'] });
    client = await RawAmqpClient.open();
  });

  it('takes the stale lock over, continues the partial and publishes the verified image', async () => {
    const c = cell!;
    const image = await c.seed('node-a', IMAGE, SIZE);
    // The first conductor reads node-a at 64 MiB/s (its own cap): about 4 s to half-way, time to kill it.
    const first = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'resume-a', NODE_READ_BPS: 'node-a=64Mi' }),
      60_000,
    ).ready();
    const correlationId = client!.send(c.topology.requestQueue.name, {
      v: 1,
      requestId: 'req-resume',
      imageId: IMAGE,
      destination: 'node-b',
      source: 'node-a',
      sha256: image.sha256,
    });
    const tmp = path.join(c.root, 'node-b', 'tmp');
    const verified = async () => {
      for (const name of await fsp.readdir(tmp).catch(() => [] as string[])) {
        if (!name.endsWith('.origin.part')) continue;
        const text = await fsp.readFile(path.join(tmp, name), 'utf8').catch(() => '{}');
        const bytes = (JSON.parse(text) as { verified?: { bytes: number } }).verified?.bytes ?? 0;
        if (bytes >= SIZE / 2) return bytes;
      }
      return undefined;
    };
    const killedAt = await waitFor(verified, 'the partial copy to be resumable past half-way', 60_000);
    first.signal('SIGKILL');
    expect(await first.exited()).toMatchObject({ signal: 'SIGKILL' });

    const second = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'resume-b' }),
      60_000,
    ).ready();
    const reply = await client!.finalReply(correlationId, 90_000);
    expect(reply).toMatchObject({
      status: 'completed',
      conductorId: 'resume-b',
      bytes: SIZE,
      sha256: image.sha256,
    });
    const [answered] = await answersLogged([second], ['req-resume']);
    // It continued from a checkpoint at least as far as the one seen before the kill.
    expect(answered!.resumedBytes).toBeGreaterThanOrEqual(killedAt!);
    expect(answered!.resumedBytes).toBeLessThan(SIZE);
    expect(await sha256OfFile(c.store.entries.imagePath('node-b', IMAGE))).toBe(image.sha256);
    expect(await c.tmpLeftovers()).toEqual([]);
    expect(errorLines([second])).toEqual([]);
  });
});
