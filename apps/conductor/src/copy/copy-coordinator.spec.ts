import { describe, expect, it } from 'vitest';
import { ReasonError } from '@app/contracts';
import { CopyCoordinator, type InFlightCopy } from './copy-coordinator';
import type { CopyJob, CopyJobResult, CopyProgress } from './copy-job';
import type { CopyWorkflow } from './copy-workflow';

const JOB: CopyJob = { imageId: 'img-1', destination: 'node-b' };
const RESULT: CopyJobResult = { status: 'completed', source: 'node-a', bytes: 7, sha256: 'e'.repeat(64) };

/** A workflow whose copies finish when the test says so. */
function fakeWorkflow() {
  const runs: Array<{
    job: CopyJob;
    attemptId: string;
    signal?: AbortSignal;
    progress: (p: CopyProgress) => void;
    finish: (result: CopyJobResult) => void;
    fail: (error: Error) => void;
  }> = [];
  const workflow = {
    run: (
      job: CopyJob,
      options: { attemptId: string; signal?: AbortSignal; onProgress: (p: CopyProgress) => void },
    ) =>
      new Promise<CopyJobResult>((resolve, reject) =>
        runs.push({
          job,
          attemptId: options.attemptId,
          signal: options.signal,
          progress: options.onProgress,
          finish: resolve,
          fail: reject,
        }),
      ),
  } as unknown as CopyWorkflow;
  return { workflow, runs };
}

describe('CopyCoordinator', () => {
  it('runs one copy for requests of the same image and destination; the joiner is told it coalesced', async () => {
    const { workflow, runs } = fakeWorkflow();
    const coordinator = new CopyCoordinator(workflow);
    const first = coordinator.run(JOB, 'r-1', 'a-1');
    const second = coordinator.run({ ...JOB }, 'r-2', 'a-2');
    expect(runs).toHaveLength(1);
    expect(coordinator.inFlight().map((c) => c.requestIds)).toEqual([['r-1', 'r-2']]);
    runs[0]!.finish(RESULT);
    await expect(first).resolves.toEqual({ result: RESULT, coalesced: false });
    await expect(second).resolves.toEqual({ result: RESULT, coalesced: true });
    expect(coordinator.inFlight()).toEqual([]);
  });

  it('does not pass the cancel of the request that started a copy on to a joiner: the joiner copies on its own', async () => {
    const { workflow, runs } = fakeWorkflow();
    const coordinator = new CopyCoordinator(workflow);
    const first = coordinator.run(JOB, 'r-1', 'a-1');
    const second = coordinator.run(JOB, 'r-2', 'a-2');
    expect(runs).toHaveLength(1);
    runs[0]!.fail(new ReasonError('CANCELLED', 'request r-1 was cancelled'));
    await expect(first).rejects.toMatchObject({ code: 'CANCELLED' });
    await Promise.resolve();
    await new Promise((resolve) => setImmediate(resolve));
    expect(runs.map((r) => r.attemptId)).toEqual(['a-1', 'a-2']);
    expect(coordinator.inFlight().map((c) => c.requestIds)).toEqual([['r-2']]);
    runs[1]!.finish(RESULT);
    await expect(second).resolves.toEqual({ result: RESULT, coalesced: false });
  });

  it('lets a joiner that is cancelled itself end with its own cancel', async () => {
    const { workflow, runs } = fakeWorkflow();
    const coordinator = new CopyCoordinator(workflow);
    const own = new AbortController();
    const first = coordinator.run(JOB, 'r-1', 'a-1');
    const second = coordinator.run(JOB, 'r-2', 'a-2', own.signal);
    own.abort(new ReasonError('CANCELLED', 'request r-2 was cancelled'));
    runs[0]!.fail(new ReasonError('CANCELLED', 'request r-1 was cancelled'));
    await expect(first).rejects.toMatchObject({ code: 'CANCELLED' });
    await expect(second).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(runs).toHaveLength(1);
  });

  it('gives every joiner the shared copy failure', async () => {
    const { workflow, runs } = fakeWorkflow();
    const coordinator = new CopyCoordinator(workflow);
    const first = coordinator.run(JOB, 'r-1', 'a-1');
    const second = coordinator.run(JOB, 'r-2', 'a-2');
    expect(runs).toHaveLength(1);
    runs[0]!.fail(new ReasonError('LOCK_TIMEOUT', 'spec'));
    await expect(first).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    await expect(second).rejects.toMatchObject({ code: 'LOCK_TIMEOUT' });
    expect(coordinator.inFlight()).toEqual([]);
  });

  it.each([
    ['another sha256', { sha256: 'b'.repeat(64) }],
    ['another size', { size: 100 }],
    ['another named source', { source: 'node-c' }],
  ])('runs a request with %s on its own', async (_what, differs) => {
    const { workflow, runs } = fakeWorkflow();
    const coordinator = new CopyCoordinator(workflow);
    const first = coordinator.run({ ...JOB, source: 'node-a', sha256: 'a'.repeat(64) }, 'r-1', 'a-1');
    const second = coordinator.run(
      { ...JOB, source: 'node-a', sha256: 'a'.repeat(64), ...differs },
      'r-2',
      'a-2',
    );
    expect(runs).toHaveLength(2);
    runs[1]!.finish(RESULT);
    await expect(second).resolves.toEqual({ result: RESULT, coalesced: false });
    runs[0]!.finish(RESULT);
    await expect(first).resolves.toEqual({ result: RESULT, coalesced: false });
  });

  it('lets a request naming no source join a copy from a named source', async () => {
    const { workflow, runs } = fakeWorkflow();
    const coordinator = new CopyCoordinator(workflow);
    const first = coordinator.run({ ...JOB, source: 'node-a' }, 'r-1', 'a-1');
    const second = coordinator.run(JOB, 'r-2', 'a-2');
    expect(runs).toHaveLength(1);
    runs[0]!.finish(RESULT);
    await first;
    await expect(second).resolves.toMatchObject({ coalesced: true });
  });

  it('keeps the first copy as the one to join while a request with other expectations runs', async () => {
    const { workflow, runs } = fakeWorkflow();
    const coordinator = new CopyCoordinator(workflow);
    const first = coordinator.run(JOB, 'r-1', 'a-1');
    const other = coordinator.run({ ...JOB, size: 1 }, 'r-2', 'a-2');
    const third = coordinator.run(JOB, 'r-3', 'a-3');
    expect(runs).toHaveLength(2);
    runs[1]!.finish(RESULT);
    await other;
    // The other copy ending must not drop the first from the table.
    expect(coordinator.inFlight().map((c) => c.requestIds)).toEqual([['r-1', 'r-3']]);
    runs[0]!.finish(RESULT);
    await expect(third).resolves.toMatchObject({ coalesced: true });
    await first;
  });

  it('starts a new copy for a request that comes after the last one ended', async () => {
    const { workflow, runs } = fakeWorkflow();
    const coordinator = new CopyCoordinator(workflow);
    const first = coordinator.run(JOB, 'r-1', 'a-1');
    runs[0]!.finish(RESULT);
    await first;
    const again = coordinator.run(JOB, 'r-2', 'a-2');
    expect(runs).toHaveLength(2);
    runs[1]!.finish(RESULT);
    await expect(again).resolves.toMatchObject({ coalesced: false });
  });

  it('passes the attempt id and the abort signal of the request that started the copy', async () => {
    const { workflow, runs } = fakeWorkflow();
    const coordinator = new CopyCoordinator(workflow);
    const signal = new AbortController().signal;
    void coordinator.run(JOB, 'r-1', 'a-1', signal);
    expect(runs[0]).toMatchObject({ attemptId: 'a-1', signal });
    runs[0]!.finish(RESULT);
  });

  it('shows the copy phase by phase, with the lock wait open only while waiting', async () => {
    const { workflow, runs } = fakeWorkflow();
    const seen: Array<Pick<InFlightCopy, 'phase' | 'source' | 'bytesDone'> & { waiting: boolean }> = [];
    const coordinator = new CopyCoordinator(workflow, (copy) =>
      seen.push({
        phase: copy.phase,
        source: copy.source,
        bytesDone: copy.bytesDone,
        waiting: copy.lockWaitStartedMono !== undefined,
      }),
    );
    const done = coordinator.run({ ...JOB, size: 10 }, 'r-1', 'a-1');
    expect(coordinator.inFlight()[0]).toMatchObject({ phase: 'waiting-for-lock', bytesTotal: 10 });
    const { progress } = runs[0]!;
    progress({ phase: 'waiting-for-lock', bytesDone: 0, bytesTotal: 10 });
    progress({ phase: 'copying', source: 'node-a', bytesDone: 4, bytesTotal: 10 });
    progress({ phase: 'verifying', bytesDone: 10, bytesTotal: 10 });
    expect(seen).toEqual([
      { phase: 'waiting-for-lock', source: undefined, bytesDone: 0, waiting: true },
      { phase: 'copying', source: 'node-a', bytesDone: 4, waiting: false },
      { phase: 'verifying', source: 'node-a', bytesDone: 10, waiting: false },
    ]);
    runs[0]!.finish(RESULT);
    await done;
  });
});
