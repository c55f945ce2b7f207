import { describe, expect, it } from 'vitest';
import { conductorTestbed, publishConfirmed } from './support/conductor-harness';
import { heldLockEntries, partialCopies } from './support/cell-observers';
import { ConductorProcess } from './support/conductor-process';
import { describeRun, runIcc } from './support/agent-cli';
import { exists } from './support/image-store-fixtures';
import { sleep, waitFor } from './support/async';

const MiB = 1024 * 1024;
const IMAGE = 'cancel.qcow2';

/**
 * A copy is "running" for as long as the test wants: it is frozen (SIGSTOP) with a partial file under
 * tmp/, the cancel is published meanwhile, and the conductor resumed (SIGCONT) finds the cancel in its
 * next turn of the event loop, long before the rest of the image is copied.
 */
async function freezeMidCopy(conductor: ConductorProcess, root: string, node: string, size: number) {
  await waitFor(
    async () => (await partialCopies(root, node)).some((f) => f.size > 0),
    `a partial copy on ${node}`,
    30_000,
  );
  conductor.signal('SIGSTOP');
  const partial = await partialCopies(root, node);
  expect(partial.length).toBe(1);
  expect(partial[0]!.size).toBeLessThan(size);
}

/**
 * Cancels published with confirms while the conductor is frozen, so they wait in its socket when it resumes
 * (a CLI started now would take longer to connect than the rest of the copy takes).
 */
async function sendCancels(queue: string, replyTo: string, cancels: Array<Record<string, string>>) {
  await publishConfirmed(
    queue,
    cancels.map((c) => ({
      body: { v: 1, ...c },
      replyTo,
      correlationId: `cancel-${c.requestId ?? c.jobId}`,
    })),
  );
  await sleep(300); // the broker pushes them to the frozen conductor's connection
}

describe('cancel: copy requests and jobs', () => {
  const bed = conductorTestbed(['src', 'a', 'b', 'c']);

  it('a running copy is aborted (partial removed, locks released, answered CANCELLED); a queued one is answered CANCELLED when taken; an unknown id gets a clear answer', async () => {
    const cell = bed.cell!;
    const client = bed.client!;
    const image = await cell.seed('src', IMAGE, 256 * MiB);
    const conductor = await ConductorProcess.start(
      bed.pool,
      cell.conductorEnv({ CONDUCTOR_ID: 'cancel-c', COPY_CONCURRENCY: '1' }),
      90_000,
    ).ready();
    const cliEnv = { CELL_ID: cell.cellId, AMQP_URL: cell.conductorEnv().AMQP_URL };
    const copy = (requestId: string, destination: string) =>
      client.send(cell.topology.requestQueue.name, {
        v: 1,
        requestId,
        imageId: IMAGE,
        destination,
        source: 'src',
      });
    const running = copy('req-running', 'a');
    await freezeMidCopy(conductor, cell.root, 'a', image.size);
    // Concurrency 1: this one stays in the queue until the first is answered.
    const queued = copy('req-queued', 'b');
    await sendCancels(cell.topology.jobQueue.name, client.replyQueueName, [
      { type: 'cancel', requestId: 'req-running' },
      { type: 'cancel', requestId: 'req-queued' },
    ]);
    conductor.signal('SIGCONT');
    expect(await client.finalReply('cancel-req-running', 30_000)).toMatchObject({
      type: 'cancel-answer',
      status: 'cancelled',
    });
    expect(await client.finalReply('cancel-req-queued', 30_000)).toMatchObject({
      type: 'cancel-answer',
      status: 'recorded',
    });

    expect(await client.finalReply(running, 30_000)).toMatchObject({
      requestId: 'req-running',
      status: 'failed',
      reason: 'CANCELLED',
      retryable: false,
    });
    expect(await client.finalReply(queued, 30_000)).toMatchObject({
      requestId: 'req-queued',
      status: 'failed',
      reason: 'CANCELLED',
      detail: 'request req-queued was cancelled before it started', // not started, then aborted
    });
    // Nothing half-published, nothing left behind, no lock held.
    expect(await exists(cell.store.entries.imagePath('a', IMAGE))).toBe(false);
    expect(await exists(cell.store.entries.imagePath('b', IMAGE))).toBe(false);
    expect(await cell.tmpLeftovers()).toEqual([]);
    expect(await heldLockEntries(cell.root)).toEqual([]);
    // Not dead-lettered: nothing was wrong with them. (The conductor logs each after its answer, so the
    // lines may reach this process after the answers.)
    const cancelledLines = () =>
      conductor
        .logs()
        .filter((l) => l.msg === 'copy request cancelled')
        .map((l) => String(l.requestId))
        .sort();
    await waitFor(() => cancelledLines().length >= 2, 'the log lines of both cancelled copies');
    expect(cancelledLines()).toEqual(['req-queued', 'req-running']);

    const unknownArgs = ['job', 'cancel', 'no-such-job'];
    const unknown = await runIcc(unknownArgs, { env: cliEnv });
    expect(unknown.code, describeRun(unknownArgs, unknown)).toBe(3);
    expect(unknown.stdout).toContain('not-found: no job no-such-job in this cell');
    const neverSentArgs = ['cancel', 'never-sent'];
    const neverSent = await runIcc(neverSentArgs, { env: cliEnv });
    expect(neverSent.code, describeRun(neverSentArgs, neverSent)).toBe(0);
    expect(neverSent.stdout).toContain('recorded: request never-sent is not running on cancel-c');
  });

  it('icc job cancel: the running copy of the job is aborted cleanly, the queued ones skipped; the job result says so', async () => {
    const cell = bed.cell!;
    const image = await cell.seed('src', IMAGE, 256 * MiB);
    const conductor = await ConductorProcess.start(
      bed.pool,
      cell.conductorEnv({ CONDUCTOR_ID: 'cancel-j', COPY_CONCURRENCY: '1' }),
      90_000,
    ).ready();
    const cliEnv = { CELL_ID: cell.cellId, AMQP_URL: cell.conductorEnv().AMQP_URL, CACHE_ROOT: cell.root };
    const jobArgs = ['precache', IMAGE, '--nodes', 'a,b,c', '--job-id', 'job-c', '--wait', '--json'];
    const job = runIcc(jobArgs, { env: cliEnv, timeoutMs: 80_000 });
    // Copies run one at a time: exactly one node is copying when the conductor is frozen.
    await waitFor(
      async () => {
        for (const node of ['a', 'b', 'c'])
          if ((await partialCopies(cell.root, node)).some((f) => f.size > 0)) return node;
        return undefined;
      },
      'a copy of the job running',
      30_000,
    );
    const runningNode = (
      await Promise.all(
        ['a', 'b', 'c'].map(async (n) => ((await partialCopies(cell.root, n)).length > 0 ? n : '')),
      )
    ).find(Boolean)!;
    await freezeMidCopy(conductor, cell.root, runningNode, image.size);
    await sendCancels(cell.topology.jobQueue.name, bed.client!.replyQueueName, [
      { type: 'cancel', jobId: 'job-c' },
    ]);
    conductor.signal('SIGCONT');
    expect(await bed.client!.finalReply('cancel-job-c', 30_000)).toMatchObject({
      type: 'cancel-answer',
      status: 'cancelled',
      jobId: 'job-c',
    });

    const run = await job;
    expect(run.code, describeRun(jobArgs, run)).toBe(3); // not every node succeeded
    const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as {
      type: string;
      cancelled?: boolean;
      nodes: { node: string; outcome: string }[];
    };
    expect(result.type).toBe('job-result');
    expect(result.cancelled).toBe(true);
    const byNode = Object.fromEntries(result.nodes.map((n) => [n.node, n.outcome]));
    expect(byNode[runningNode]).toBe('cancelled');
    // The others were never started: answered CANCELLED when taken (not started, then aborted).
    for (const n of result.nodes as { node: string; outcome: string; detail?: string }[])
      if (n.node !== runningNode && n.outcome === 'cancelled')
        expect(n.detail, n.node).toMatch(/before (it|this node was) started/);
    // Copies done before the cancel stay completed; none after it was started.
    for (const node of ['a', 'b', 'c']) {
      expect(['cancelled', 'completed']).toContain(byNode[node]);
      expect(await exists(cell.store.entries.imagePath(node, IMAGE))).toBe(byNode[node] === 'completed');
    }
    expect(Object.values(byNode).filter((o) => o === 'cancelled').length).toBeGreaterThanOrEqual(1);
    expect(await cell.tmpLeftovers()).toEqual([]);
    expect(await heldLockEntries(cell.root)).toEqual([]);
    const statusArgs = ['job', 'status', 'job-c'];
    const status = await runIcc(statusArgs, { env: cliEnv });
    expect(status.stdout, describeRun(statusArgs, status)).toContain('cancelled');
  });

  it('a cancel of a job copy that has finished says so, even when the ids hold dots (job "rel", node "b.c")', async () => {
    const cell = bed.cell!;
    // Job "rel" ran on node "b.c"; its copy request id is "rel.b.c", which also reads as job "rel.b", node "c".
    await cell.store.jobs.create({
      v: 1,
      jobId: 'rel',
      type: 'precache',
      imageId: IMAGE,
      nodes: ['b.c'],
      createdAt: new Date().toISOString(),
      createdBy: 'test',
    });
    await cell.store.jobs.recordOutcome('rel', {
      node: 'b.c',
      outcome: 'completed',
      at: new Date().toISOString(),
    });
    await ConductorProcess.start(bed.pool, cell.conductorEnv({ CONDUCTOR_ID: 'cancel-d' }), 90_000).ready();

    await publishConfirmed(cell.topology.jobQueue.name, [
      {
        body: { v: 1, type: 'cancel', requestId: 'rel.b.c' },
        replyTo: bed.client!.replyQueueName,
        correlationId: 'cancel-dotted',
      },
    ]);

    expect(await bed.client!.finalReply('cancel-dotted', 30_000)).toMatchObject({
      type: 'cancel-answer',
      status: 'already-final',
      detail: 'request rel.b.c (job rel, node b.c) had finished: completed',
    });
  });
});
