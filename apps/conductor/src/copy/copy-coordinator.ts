import { type CopyPriority, isReasonError } from '@app/contracts';
import { performance } from 'node:perf_hooks';
import { type CopyJob, type CopyJobResult, type CopyPhase, type CopyProgress, copyKey } from './copy-job';
import type { CopyWorkflow } from './copy-workflow';

/** A copy running in this conductor, as the status page shows it. */
export interface InFlightCopy {
  key: string;
  imageId: string;
  destination: string;
  source?: string;
  requestIds: string[];
  phase: CopyPhase;
  bytesDone: number;
  bytesTotal: number;
  startedAt: string;
  /** Set while waiting for locks, for "lock wait so far". */
  lockWaitStartedMono?: number;
  startedMono: number;
}

/**
 * Runs copies through the workflow, coalescing duplicates: a request for an image and destination that
 * is already being copied here waits for that copy instead of starting another, and every requester is
 * answered with its outcome. Across conductors the destination lock does the same job, and the loser
 * finds the image already present.
 */
export class CopyCoordinator {
  private readonly running = new Map<
    string,
    { copy: InFlightCopy; job: CopyJob; done: Promise<CopyJobResult>; priority: { now: CopyPriority } }
  >();

  constructor(
    private readonly workflow: CopyWorkflow,
    private readonly onProgress: (copy: InFlightCopy) => void = () => undefined,
  ) {}

  inFlight(): InFlightCopy[] {
    return [...this.running.values()].map((r) => r.copy);
  }

  /** Returns the copy's outcome and whether this request joined a copy already running. */
  async run(
    job: CopyJob,
    requestId: string,
    attemptId: string,
    signal?: AbortSignal,
  ): Promise<{ result: CopyJobResult; coalesced: boolean }> {
    const key = copyKey(job);
    const existing = this.running.get(key);
    if (existing && sameExpectation(existing.job, job)) {
      existing.copy.requestIds.push(requestId);
      // A VM waiting on a copy makes it interactive, whoever asked first.
      if ((job.priority ?? 'interactive') === 'interactive') existing.priority.now = 'interactive';
      try {
        return { result: await existing.done, coalesced: true };
      } catch (error) {
        // Cancelled by the request that started it: that cancel is not this request's (unless it was
        // cancelled too), so this one copies on its own rather than be answered CANCELLED.
        if (!isReasonError(error, 'CANCELLED') || signal?.aborted) throw error;
      } finally {
        removeOnce(existing.copy.requestIds, requestId);
      }
      if (this.running.get(key) === existing) this.running.delete(key);
      return this.run(job, requestId, attemptId, signal);
    }
    const copy: InFlightCopy = {
      key,
      imageId: job.imageId,
      destination: job.destination,
      source: job.source,
      requestIds: [requestId],
      phase: 'waiting-for-lock',
      bytesDone: 0,
      bytesTotal: job.size ?? 0,
      startedAt: new Date().toISOString(),
      startedMono: performance.now(),
    };
    const priority = { now: job.priority ?? 'interactive' };
    const done = this.workflow.run(job, {
      attemptId,
      signal,
      onProgress: (progress) => this.update(copy, progress),
      priority: () => priority.now,
    });
    const entry = { copy, done, job, priority };
    // A second request with other expectations (another checksum) runs on its own: the lock orders them.
    if (!existing) this.running.set(key, entry);
    try {
      return { result: await done, coalesced: false };
    } finally {
      if (this.running.get(key) === entry) this.running.delete(key);
    }
  }

  private update(copy: InFlightCopy, progress: CopyProgress): void {
    if (progress.phase === 'waiting-for-lock') copy.lockWaitStartedMono ??= performance.now();
    else copy.lockWaitStartedMono = undefined;
    copy.phase = progress.phase;
    copy.source = progress.source ?? copy.source;
    copy.bytesDone = progress.bytesDone;
    copy.bytesTotal = progress.bytesTotal;
    this.onProgress(copy);
  }
}

function sameExpectation(a: CopyJob, b: CopyJob): boolean {
  return a.sha256 === b.sha256 && a.size === b.size && (b.source === undefined || a.source === b.source);
}

function removeOnce(list: string[], value: string): void {
  const i = list.indexOf(value);
  if (i >= 0) list.splice(i, 1);
}
