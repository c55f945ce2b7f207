import { describe, expect, it } from 'vitest';
import { NodeLockManager } from '@app/locking';
import { conductorTestbed } from './support/conductor-harness';
import { heldLockEntries } from './support/cell-observers';
import { ConductorProcess } from './support/conductor-process';
import { describeRun, runIcc } from './support/agent-cli';
import { exists } from './support/image-store-fixtures';
import { waitFor } from './support/async';

const IMAGE = 'retired.qcow2';

describe('purge job', () => {
  const bed = conductorTestbed(['a', 'b', 'c', 'd', 'e']);

  it('deletes under each node exclusive lock: waits for a reader that leaves, reports one that stays busy, keeps a pinned copy unless forced', async () => {
    const cell = bed.cell!;
    for (const node of ['a', 'b', 'c', 'e']) await cell.seed(node, IMAGE, 256 * 1024);
    await cell.store.markers.pin('a', IMAGE);
    // Readers as a copy holds them: shared locks of another process (this test), with live heartbeats.
    const readers = new NodeLockManager({
      root: cell.root,
      conductorId: 'test-reader',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500, pollMs: 25 },
    });
    const staying = await readers.acquire(
      { node: 'b', imageId: IMAGE, mode: 'shared' },
      { timeoutMs: 5_000 },
    );
    const leaving = await readers.acquire(
      { node: 'c', imageId: IMAGE, mode: 'shared' },
      { timeoutMs: 5_000 },
    );
    await ConductorProcess.start(
      bed.pool,
      cell.conductorEnv({ CONDUCTOR_ID: 'purger', LOCK_WAIT_MS: '4000' }),
      60_000,
    ).ready();
    const cliEnv = { CELL_ID: cell.cellId, AMQP_URL: cell.conductorEnv().AMQP_URL };
    const args = ['purge', IMAGE, '--nodes', 'a,b,c,d,e,ghost', '--job-id', 'purge-1', '--wait', '--json'];
    const purge = runIcc(args, { env: cliEnv, timeoutMs: 40_000 });
    // The reader on c leaves while the purge waits for it.
    await waitFor(
      async () => (await cell.store.jobs.outcome('purge-1', 'e')) !== undefined,
      'e purged',
      20_000,
    );
    await leaving.release();

    const run = await purge;
    expect(run.code, describeRun(args, run)).toBe(3); // b busy, a pinned, ghost unknown
    const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as {
      type: string;
      nodes: { node: string; outcome: string; detail?: string }[];
    };
    expect(result.type).toBe('job-result');
    const byNode = Object.fromEntries(result.nodes.map((n) => [n.node, n.outcome]));
    expect(byNode).toEqual({
      a: 'pinned',
      b: 'busy',
      c: 'deleted',
      d: 'absent',
      e: 'deleted',
      ghost: 'skipped-unknown',
    });
    expect(await exists(cell.store.entries.imagePath('a', IMAGE))).toBe(true);
    expect(await exists(cell.store.entries.imagePath('b', IMAGE))).toBe(true); // never deleted under a reader
    expect(staying.signal.aborted).toBe(false);
    for (const node of ['c', 'e']) {
      expect(await exists(cell.store.entries.imagePath(node, IMAGE))).toBe(false);
      expect(await exists(cell.store.entries.metaPath(node, IMAGE))).toBe(false);
    }
    await staying.release();
    await readers.releaseAll();

    const forcedArgs = [
      'purge',
      IMAGE,
      '--nodes',
      'a,b',
      '--force-unpin',
      '--job-id',
      'purge-2',
      '--wait',
      '--json',
    ];
    const forced = await runIcc(forcedArgs, { env: cliEnv, timeoutMs: 40_000 });
    expect(forced.code, describeRun(forcedArgs, forced)).toBe(0);
    const forcedNodes = (
      JSON.parse(forced.stdout.trim().split('\n').pop()!) as { nodes: { node: string; outcome: string }[] }
    ).nodes;
    expect(Object.fromEntries(forcedNodes.map((n) => [n.node, n.outcome]))).toEqual({
      a: 'deleted',
      b: 'deleted',
    });
    expect(await cell.store.markers.isPinned('a', IMAGE)).toBe(false);
    expect(await heldLockEntries(cell.root)).toEqual([]);
  });
});
