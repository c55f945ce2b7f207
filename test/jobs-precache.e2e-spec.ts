import { describe, expect, it } from 'vitest';
import {
  answeredLines,
  conductorTestbed,
  copiesPerDestination,
  errorLines,
} from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { AdminHttp } from './support/admin-http';
import { describeRun, runIcc } from './support/agent-cli';
import { sha256OfFile } from './support/image-store-fixtures';
import { waitFor } from './support/async';

const MiB = 1024 * 1024;
const IMAGE = 'precache.qcow2';
const TARGETS = Array.from({ length: 32 }, (_, i) => `n${String(i + 1).padStart(2, '0')}`);

describe('pre-cache job: 32 nodes, a conductor SIGKILLed mid-job', () => {
  const bed = conductorTestbed(['origin', ...TARGETS]);

  it('every node ends with a verified copy, each copied once, and the job result lists each node once', async () => {
    const cell = bed.cell!;
    const image = await cell.seed('origin', IMAGE, 8 * MiB);
    const env = (id: string) => cell.conductorEnv({ CONDUCTOR_ID: id, COPY_CONCURRENCY: '2' });
    const doomed = await ConductorProcess.start(bed.pool, env('doomed'), 120_000).ready();
    const survivor = await ConductorProcess.start(bed.pool, env('survivor'), 120_000).ready();
    const cliEnv = { CELL_ID: cell.cellId, AMQP_URL: cell.conductorEnv().AMQP_URL, CACHE_ROOT: cell.root };
    const args = ['precache', IMAGE, '--nodes', TARGETS.join(','), '--job-id', 'pc-32', '--wait', '--json'];
    const waiting = runIcc(args, { env: cliEnv, timeoutMs: 110_000 });

    // Mid-job: some nodes done, the doomed conductor with copies of the job in flight or queued for it.
    await waitFor(async () => (await cell.store.jobs.outcomes('pc-32')).length >= 4, '4 nodes done', 60_000);
    doomed.signal('SIGKILL');
    expect(await doomed.exited()).toMatchObject({ signal: 'SIGKILL' });
    const doneAtKill = (await cell.store.jobs.outcomes('pc-32')).length;
    const partialsAtKill = (await cell.tmpLeftovers()).length;

    const run = await waiting;
    expect(run.code, describeRun(args, run)).toBe(0);
    const result = JSON.parse(run.stdout.trim().split('\n').pop()!) as {
      type: string;
      nodesDone: number;
      nodesTotal: number;
      nodes: { node: string; outcome: string }[];
    };
    expect(result).toMatchObject({ type: 'job-result', nodesDone: 32, nodesTotal: 32 });
    expect(result.nodes.map((n) => n.node).sort()).toEqual(TARGETS);
    for (const n of result.nodes) expect(['completed', 'already-present']).toContain(n.outcome);
    // The per-node lines the CLI printed on stderr are not asked for with --json; the table is icc job status.

    for (const node of TARGETS)
      expect(await sha256OfFile(cell.store.entries.imagePath(node, IMAGE)), node).toBe(image.sha256);
    // Copied once: no destination got two completed, non-coalesced copies across both conductors' logs.
    // A node recorded completed was copied once: logged so, or (the doomed conductor killed between its
    // record and its log line) its redelivered request answered already-present by the survivor.
    const copies = copiesPerDestination([doomed, survivor]);
    for (const [key, count] of copies) expect(count, key).toBe(1);
    const answers = answeredLines([doomed, survivor]);
    for (const n of result.nodes.filter((o) => o.outcome === 'completed'))
      expect(
        copies.get(`${IMAGE} -> ${n.node}`) === 1 ||
          answers.some(
            (l) => l.destination === n.node && l.status === 'already-present' && l.redelivered === true,
          ),
        n.node,
      ).toBe(true);
    expect(await cell.store.jobs.outcomes('pc-32')).toHaveLength(32);

    // The job message again (as a redelivery after a crash would bring it): accepted from its record,
    // nothing published again, as every node has its outcome.
    const again = bed.client!.send(cell.topology.jobQueue.name, {
      v: 1,
      type: 'precache',
      jobId: 'pc-32',
      imageId: IMAGE,
      nodes: TARGETS,
    });
    expect(await bed.client!.finalReply(again, 20_000)).toMatchObject({
      type: 'job-accepted',
      nodesDone: 32,
    });
    // The conductor logs the acceptance after its reply: the line may reach this process after the reply.
    const acceptedAgain = await waitFor(
      async () =>
        survivor
          .logs()
          .filter((l) => l.msg === 'pre-cache job accepted' && l.jobId === 'pc-32')
          .find((l) => l.published === 0),
      "the survivor's log of the second acceptance",
      10_000,
    );
    expect(acceptedAgain).toMatchObject({ published: 0 });

    // Without --wait, icc prints the acceptance only, also of a job that has finished (no result table).
    const noWaitArgs = ['precache', IMAGE, '--nodes', TARGETS.join(','), '--job-id', 'pc-32'];
    const noWait = await runIcc(noWaitArgs, { env: cliEnv });
    expect(noWait.code, describeRun(noWaitArgs, noWait)).toBe(0);
    const lines = noWait.stdout.trim().split('\n');
    expect(lines, describeRun(noWaitArgs, noWait)).toHaveLength(1);
    expect(lines[0]).toContain(`accepted: precache job pc-32 (${IMAGE}): 32/32 nodes done`);

    // From any terminal: the status read from the shared folder.
    const statusArgs = ['job', 'status', 'pc-32'];
    const status = await runIcc(statusArgs, { env: cliEnv });
    expect(status.code, describeRun(statusArgs, status)).toBe(0);
    expect(status.stdout).toContain('32/32 nodes done');
    expect(status.stdout).toContain('done');
    // And on /status of any conductor (the survivor did not take the job message necessarily).
    const jobs = (await AdminHttp.of(survivor).json<{ jobs: Record<string, unknown>[] }>('/status')).jobs;
    expect(jobs).toContainEqual(
      expect.objectContaining({
        jobId: 'pc-32',
        type: 'precache',
        state: 'done',
        nodesDone: 32,
        nodesTotal: 32,
        failed: 0,
      }),
    );
    await waitFor(async () => (await cell.tmpLeftovers()).length === 0, 'no partial copies left', 20_000);
    expect(errorLines([survivor])).toEqual([]);
    console.log(
      `jobs-precache: ${JSON.stringify({ doneAtKill, partialsAtKill, completed: result.nodes.filter((n) => n.outcome === 'completed').length, alreadyPresent: result.nodes.filter((n) => n.outcome === 'already-present').length, copiesByDoomed: copiesPerDestination([doomed]).size })}`,
    );
  });
});
