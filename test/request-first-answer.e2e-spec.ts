import { describe, expect, it } from 'vitest';
import { conductorTestbed } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { describeRun, runIcc } from './support/agent-cli';
import { exists } from './support/image-store-fixtures';

const IMAGE = 'first-answer.qcow2';

/**
 * A request id's first final answer stands (docs/protocol.md, "Delivery guarantees"): a cancel sent after
 * it says `already-final` and changes nothing, and a re-send of the same request id gets that answer again.
 * Before the answers were recorded, the cancel was `recorded` and the re-send answered failed CANCELLED
 * although the image was published and stayed.
 */
describe('a request id is answered one way', () => {
  const bed = conductorTestbed(['src', 'a']);

  it('complete, cancel, re-send: the cancel says already-final and the re-send is answered as the first time', async () => {
    const cell = bed.cell!;
    const client = bed.client!;
    await cell.seed('src', IMAGE, 1024 * 1024);
    await ConductorProcess.start(bed.pool, cell.conductorEnv({ CONDUCTOR_ID: 'first-c' }), 90_000).ready();
    const request = { v: 1, requestId: 'req-done', imageId: IMAGE, destination: 'a', source: 'src' };

    const first = await client.finalReply(
      await client.send(cell.topology.requestQueue.name, request),
      30_000,
    );
    expect(first).toMatchObject({ requestId: 'req-done', status: 'completed' });

    const cancelArgs = ['cancel', 'req-done'];
    const cancel = await runIcc(cancelArgs, {
      env: { CELL_ID: cell.cellId, AMQP_URL: cell.conductorEnv().AMQP_URL },
    });
    expect(cancel.code, describeRun(cancelArgs, cancel)).toBe(0);
    expect(cancel.stdout, describeRun(cancelArgs, cancel)).toContain(
      `already-final: request req-done was answered completed at ${String(first.at)}`,
    );

    const again = await client.finalReply(
      await client.send(cell.topology.requestQueue.name, request),
      30_000,
    );
    expect(again).toEqual(first);
    expect(await exists(cell.store.entries.imagePath('a', IMAGE))).toBe(true);
  });
});
