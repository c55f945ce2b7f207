import { performance } from 'node:perf_hooks';
import type { ImageStore } from '@app/image-store';
import type { MessagingLogger } from '@app/messaging';
import type { LockRequest, NodeLockManager } from '@app/locking';
import type { CopyJob, CopyJobResult, CopyProgress } from './copy-job';
import type { SourceSelector } from './source-selector';

/**
 * Benchmark baselines only (bench/): one lock for the whole cell, or an exclusive source lock, to measure
 * what the two node-local locks and the shared source lock are worth. Never for production.
 */
export interface LockBaseline {
  scope: 'per-node' | 'global';
  sourceMode: 'shared' | 'exclusive';
}

/** The folder the global-lock baseline locks in (it shows up as a node without images). */
export const GLOBAL_LOCK_NODE = 'global-lock-baseline';

export interface CopyRunOptions {
  attemptId: string;
  /** Aborts the copy (shutdown); the lock's own loss aborts it too. */
  signal?: AbortSignal;
  onProgress?: (progress: CopyProgress) => void;
}

/**
 * The one place that composes locks and copy: source shared + destination exclusive (taken together, in
 * the global key order), a verified copy that checks the destination lock right before publishing, and
 * the release of both locks whatever happens.
 */
export class CopyWorkflow {
  constructor(
    private readonly store: ImageStore,
    private readonly locks: NodeLockManager,
    private readonly sources: SourceSelector,
    private readonly options: { lockWaitMs: number; log: Pick<MessagingLogger, 'warn'>; baseline?: LockBaseline },
  ) {}

  /** The locks of one copy: two node-local ones, or a benchmark baseline's. */
  private lockRequests(source: string, job: CopyJob): LockRequest[] {
    const baseline = this.options.baseline ?? { scope: 'per-node', sourceMode: 'shared' };
    if (baseline.scope === 'global') return [{ node: GLOBAL_LOCK_NODE, imageId: 'all', mode: 'exclusive' }];
    return [
      { node: source, imageId: job.imageId, mode: baseline.sourceMode },
      { node: job.destination, imageId: job.imageId, mode: 'exclusive' },
    ];
  }

  async run(job: CopyJob, run: CopyRunOptions): Promise<CopyJobResult> {
    // Published images are never modified in place, so a verified one can be trusted without a lock.
    const present = await this.store.verifiedImage(job.destination, job.imageId, { sha256: job.sha256, size: job.size });
    if (present) return { status: 'already-present', bytes: 0, sha256: present.sha256 };

    const { node: source, meta: sourceMeta } = await this.sources.pick(job);
    const total = job.size ?? sourceMeta.size;
    const report = (phase: CopyProgress['phase'], bytesDone: number) =>
      run.onProgress?.({ phase, source, bytesDone, bytesTotal: total });
    report('waiting-for-lock', 0);

    const waitStarted = performance.now();
    const held = await this.locks.acquireAll(this.lockRequests(source, job), {
      attemptId: run.attemptId, timeoutMs: this.options.lockWaitMs, signal: run.signal },
    );
    const lockWaitMs = performance.now() - waitStarted;
    const endRead = this.sources.beginRead(source);
    try {
      const destinationLock = held.locks.find((l) => l.key.node === job.destination) ?? held.locks[0]!;
      // Holding the destination lock, any partial copy of this image belongs to a dead attempt.
      await this.store.removeLeftoverTmp(job.destination, job.imageId);
      report('copying', 0);
      const outcome = await this.store.copyImage({
        imageId: job.imageId,
        source,
        destination: job.destination,
        expected: { sha256: job.sha256, size: job.size },
        attemptId: run.attemptId,
        fencingToken: destinationLock.fencingToken,
        signal: run.signal ? AbortSignal.any([held.signal, run.signal]) : held.signal,
        onProgress: (done, bytesTotal) => report(done >= bytesTotal ? 'verifying' : 'copying', done),
        beforePublish: async () => {
          report('publishing', total);
          await held.assertStillHeld();
        },
      });
      // Still under the source's shared lock. Advisory (the cache cleaner's input): never fails a copy.
      await this.store.touchLastUsed(source, job.imageId).catch((error: Error) =>
        this.options.log.warn({ source, imageId: job.imageId, err: error.message }, 'could not record the last use of a source image'),
      );
      return {
        status: outcome.status === 'copied' ? 'completed' : 'already-present',
        source,
        bytes: outcome.bytes,
        sha256: outcome.sha256,
        lockWaitMs,
        copyMs: outcome.copyMs,
        verifyMs: outcome.verifyMs,
        fencingToken: destinationLock.fencingToken,
      };
    } finally {
      endRead();
      await held.release();
    }
  }
}
