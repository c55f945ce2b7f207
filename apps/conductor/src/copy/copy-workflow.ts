import { type CopyPriority, type Logger, ReasonError, errorText } from '@app/contracts';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ImageStore, SwarmRequest } from '@app/image-store';
import type { HeldLockSet, LockRequest, NodeLockManager } from '@app/locking';
import type { CopyJob, CopyJobResult, CopyProgress, CopyRunOptions } from './copy-job';
import { type ExtraHolder, takeExtraHolders } from './extra-holders';
import type { NodeBandwidth } from './node-bandwidth';
import type { OriginDownload } from './origin-download';
import { NoHolderError, SELECTION_PREFIX, type SourceSelector } from './source-selector';

/** Sources tried when the chosen one vanished before its lock was granted (no source named). */
const MAX_PICKS = 3;

/**
 * Which locks one copy takes, given the chosen source. The product has one plan, `nodeLocalLocks`; this
 * seam exists so that bench/ can measure it against baselines (one global lock, an exclusive source lock)
 * that never ship in the conductor.
 */
export type CopyLockPlan = (source: string, job: CopyJob) => LockRequest[];

/** The source's copy shared, the destination's exclusive: two node-local locks, nothing global. */
export const nodeLocalLocks: CopyLockPlan = (source, job) => [
  { node: source, imageId: job.imageId, mode: 'shared' },
  { node: job.destination, imageId: job.imageId, mode: 'exclusive' },
];

/**
 * The one place that composes locks and copy: a read slot on the chosen source, then source shared +
 * destination exclusive (taken together, in the global key order), a check that the source is still there
 * now that nobody can evict it, a verified copy that checks the destination lock right before publishing,
 * the source's last use refreshed under its lock, and the release of both locks whatever happens.
 * With LOG_LEVEL=debug every hold is logged ('copy locks held' with heldAt, 'copy locks released' with
 * releasingAt and the outcome), wall-clock times taken inside the hold.
 */
export class CopyWorkflow {
  constructor(
    private readonly store: ImageStore,
    private readonly locks: NodeLockManager,
    private readonly sources: SourceSelector,
    private readonly options: {
      lockWaitMs: number;
      log: Pick<Logger, 'warn'> & Partial<Pick<Logger, 'debug' | 'info'>>;
      lockPlan?: CopyLockPlan;
      /** The cell's origin (ORIGIN_URL), for copies no node can serve; none: they fail SOURCE_MISSING. */
      origin?: OriginDownload;
      /** NODE_READ_BPS / NODE_WRITE_BPS and their background variants; absent: no caps. */
      bandwidth?: NodeBandwidth;
      /**
       * Copies without a named source also read verified pieces from other copies in progress of the
       * image, taking a read slot per piece (docs/copies.md, "Reading from copies in progress").
       */
      fromPartialCopies?: boolean;
    },
  ) {}

  async run(job: CopyJob, run: CopyRunOptions): Promise<CopyJobResult> {
    // Before any lock: taking one creates folders under <node>/locks/, and a request must not create a node.
    await this.requireRegistered(job);
    // Published images are never modified in place, so a verified one can be trusted without a lock.
    const present = await this.store.copies.verifiedImage(job.destination, job.imageId, {
      sha256: job.sha256,
      size: job.size,
    });
    if (present) return { status: 'already-present', bytes: present.size, sha256: present.sha256 };

    // One bounded wait for a read slot and both locks together (LOCK_WAIT_MS, then a retryable LOCK_TIMEOUT).
    const waitStarted = performance.now();
    let slotWaitedMs = 0;
    const waitLeft = () => Math.round(this.options.lockWaitMs - slotWaitedMs);
    for (let pick = 1; ; pick++) {
      const picked = await this.pickSource(job, run, Math.max(1, waitLeft())).catch((error: unknown) => {
        if (error instanceof NoHolderError && this.options.origin && !job.source) return undefined;
        throw error;
      });
      if (!picked) {
        // No node holds the image: download it, unless another copy did so while we waited for the lock.
        const fetched = await this.options.origin!.run(
          job,
          run,
          this.options.lockWaitMs - (performance.now() - waitStarted),
        );
        if (fetched !== 'holder-appeared') return fetched;
        if (pick >= MAX_PICKS)
          throw new ReasonError(
            'SOURCE_MISSING',
            `${SELECTION_PREFIX}holders of ${job.imageId} appeared and vanished ${pick} times; nothing was copied`,
          );
        continue;
      }
      slotWaitedMs += picked.slotWaitMs;
      try {
        const outcome = await this.runFrom(picked, job, run, waitStarted, waitLeft());
        if (outcome !== 'source-gone') return outcome;
      } finally {
        picked.release();
      }
      // The source vanished between the choice (made without a lock) and its shared lock: a stale choice,
      // not a copy that lost its source. A named source is final; otherwise choose again (a few times).
      this.sources.forgetHolder(picked.node, job.imageId);
      if (job.source || pick >= MAX_PICKS)
        throw new ReasonError(
          'SOURCE_MISSING',
          `${SELECTION_PREFIX}node ${picked.node} no longer held a verified copy of ${job.imageId} when its lock was granted (evicted or removed before the copy started${job.source ? '' : `; ${pick} sources tried`}); nothing was copied`,
        );
    }
  }

  /**
   * The source, with a read slot for the whole copy; or, for a copy that reads from copies in progress
   * (its source has a piece list), without one: it takes a slot for each piece instead.
   */
  private async pickSource(job: CopyJob, run: CopyRunOptions, timeoutMs: number) {
    if (this.options.fromPartialCopies && !job.source) {
      const picked = await this.sources.acquire(job, { timeoutMs, signal: run.signal, perPieceSlots: true });
      const read = await this.store.copies.readPieceList(picked.node, job.imageId).catch(() => undefined);
      if (read?.list) return { ...picked, perPieceSlots: true };
    }
    return { ...(await this.sources.acquire(job, { timeoutMs, signal: run.signal })), perPieceSlots: false };
  }

  /** What a copy that reads from copies in progress needs: caps and read slots of this conductor. */
  private swarmRequest(
    job: CopyJob,
    ids: Record<string, string>,
    priority: () => CopyPriority,
    piecesFrom: PiecesFrom,
  ): SwarmRequest {
    const { bandwidth, log } = this.options;
    return {
      paceOf: (node) => bandwidth?.pace(node, job.destination, priority),
      tryReadSlot: (node) => this.sources.tryTakePieceSlot(node, priority()),
      slotFreed: (node) => this.sources.slotFreed(node),
      // A node's read cap shared with the reads it serves now, a new one counted (chooseFetch's estimate).
      expectedRate: (node, reading = false) =>
        (bandwidth?.rateOf('read', node, priority()) ?? 0) /
        Math.max(1, this.sources.slots.inUse(node) + (reading ? 0 : 1)),
      writeBps: bandwidth?.rateOf('write', job.destination, priority()) ?? 0,
      onPeerProblem: (record, problem) =>
        log.debug?.({ ...ids, record, problem }, 'a copy in progress was not read from'),
      onAdvertError: (error) =>
        log.warn({ ...ids, err: errorText(error) }, "could not write this copy's record of its pieces"),
      onPieceRead: (node, inProgress) => {
        const seen = piecesFrom.get(node) ?? { pieces: 0, inProgress };
        seen.pieces++;
        piecesFrom.set(node, seen);
      },
    };
  }

  /** UNKNOWN_NODE unless the destination, and the source when one is named, are registered nodes. */
  private async requireRegistered(job: CopyJob): Promise<void> {
    const named = [
      ['destination', job.destination],
      ...(job.source ? [['source', job.source]] : []),
    ] as const;
    for (const [field, node] of named) {
      const registration = await this.store.markers.nodeRegistration(node);
      if (!registration.registered)
        throw new ReasonError(
          'UNKNOWN_NODE',
          `${field}: node ${node} is not registered in this cell (${registration.problem}); nothing was locked or created`,
        );
    }
  }

  /** Locks, re-checks the source under its lock, copies. 'source-gone': nothing was read or written. */
  private async runFrom(
    picked: { node: string; meta: { size: number }; perPieceSlots: boolean },
    job: CopyJob,
    run: CopyRunOptions,
    waitStarted: number,
    lockWaitMs: number,
  ): Promise<CopyJobResult | 'source-gone'> {
    const source = picked.node;
    const total = job.size ?? picked.meta.size;
    const report = (phase: CopyProgress['phase'], bytesDone: number) =>
      run.onProgress?.({ phase, source, bytesDone, bytesTotal: total });
    report('waiting-for-lock', 0);
    if (lockWaitMs <= 0)
      throw new ReasonError('LOCK_TIMEOUT', `waited ${this.options.lockWaitMs} ms for a read slot and locks`);

    const held = await this.locks
      .acquireAll((this.options.lockPlan ?? nodeLocalLocks)(source, job), {
        attemptId: run.attemptId,
        timeoutMs: lockWaitMs,
        signal: run.signal,
      })
      .catch(async (error: unknown) => {
        throw await lockFolderError(error, this.store.root, job.destination);
      });
    // Wall-clock bounds of the hold, taken inside it (debug logs: tests check that no eviction overlaps a read).
    const heldAt = Date.now();
    const lockWaitMsTotal = performance.now() - waitStarted;
    const ids = { attemptId: run.attemptId, imageId: job.imageId, source, destination: job.destination };
    let outcome = 'failed';
    let extras: ExtraHolder[] = [];
    const piecesFrom: PiecesFrom = new Map();
    try {
      // Under the source's shared lock the cache cleaner cannot delete the source; before it, it could have.
      const sourceMeta = await this.store.copies.verifiedImage(source, job.imageId);
      if (!sourceMeta) {
        const now = await this.store.copies.verifiedImage(job.destination, job.imageId, {
          sha256: job.sha256,
          size: job.size,
        });
        if (now) {
          outcome = 'already-present';
          return { status: 'already-present', bytes: now.size, sha256: now.sha256 };
        }
        outcome = 'source-gone';
        this.options.log.debug?.({ ...ids }, 'source gone before its lock was granted');
        return 'source-gone';
      }
      this.options.log.debug?.({ ...ids, heldAt }, 'copy locks held');
      const destinationLock = held.locks.find((l) => l.key.node === job.destination) ?? held.locks[0]!;
      report('copying', 0);
      const priority = run.priority ?? (() => job.priority ?? 'interactive');
      // Only when the caps make it faster (holder-plan.ts): reads of other pieces from further holders,
      // each under its shared lock (and, unless the copy takes slots per piece, a read slot).
      extras = await takeExtraHolders(
        { store: this.store, locks: this.locks, sources: this.sources, bandwidth: this.options.bandwidth },
        job,
        { node: source, meta: sourceMeta },
        {
          attemptId: run.attemptId,
          signal: run.signal,
          priority: priority(),
          perPieceSlots: picked.perPieceSlots,
        },
      );
      if (extras.length > 0)
        this.options.log.debug?.(
          { ...ids, helpers: extras.map((h) => h.node) },
          'reading from several holders',
        );
      const copied = await this.store.copies.copyImage({
        imageId: job.imageId,
        source,
        destination: job.destination,
        expected: { sha256: job.sha256, size: job.size },
        attemptId: run.attemptId,
        // Holding the destination lock, any partial copy of this image belongs to a dead attempt: the
        // copy continues the most advanced one that proves what it is, and removes the others.
        resume: true,
        pace: this.options.bandwidth?.pace(source, job.destination, priority),
        ...(extras.length > 0
          ? {
              helpers: extras.map((h) => ({
                node: h.node,
                pace: this.options.bandwidth?.pace(h.node, job.destination, priority),
                lost: h.lost,
              })),
            }
          : {}),
        // A copy from several holders, further verified ones or copies in progress, may drop one.
        ...(extras.length > 0 || picked.perPieceSlots
          ? {
              onHolderDropped: (node: string, why: string, routine?: boolean) =>
                routine
                  ? this.options.log.debug?.({ ...ids, node, why }, 'a copy in progress read from has ended')
                  : this.options.log.warn({ ...ids, node, why }, 'a holder was dropped from a copy'),
            }
          : {}),
        ...(picked.perPieceSlots ? { swarm: this.swarmRequest(job, ids, priority, piecesFrom) } : {}),
        fencingToken: destinationLock.fencingToken,
        signal: run.signal ? AbortSignal.any([held.signal, run.signal]) : held.signal,
        onProgress: (done, bytesTotal) => report(done >= bytesTotal ? 'verifying' : 'copying', done),
        beforeIrreversibleStep: async (step) => {
          if (step === 'publish') report('publishing', total);
          await held.assertStillHeld();
        },
      });
      // Still under the source's shared lock (checked: rewriting a meta cannot be taken back). Advisory
      // (the cache cleaner's input): never fails a copy.
      await held
        .assertStillHeld()
        .then(() => this.store.copies.touchLastUsed(source, job.imageId))
        .catch((error: Error) =>
          this.options.log.warn(
            { source, imageId: job.imageId, err: error.message },
            'could not record the last use of a source image',
          ),
        );
      // The further holders served reads too: the same advisory record, each under its own lock.
      for (const helper of extras.filter((h) => copied.readFrom?.includes(h.node)))
        await helper
          .assertStillHeld()
          .then(() => this.store.copies.touchLastUsed(helper.node, job.imageId))
          .catch(() => undefined);
      // The destination is a verified holder now: the next copies of this image may read from it at once.
      this.sources.learnHolder(job.destination, job.imageId);
      if (picked.perPieceSlots && copied.status === 'copied')
        this.options.log.info?.({ ...ids, ...piecesReadFrom(piecesFrom) }, 'a copy read its pieces');
      outcome = copied.status === 'copied' ? 'completed' : 'already-present';
      return {
        status: copied.status === 'copied' ? 'completed' : 'already-present',
        source,
        // The size of the image at the destination, also when it was already there (copied.bytes is 0 then).
        bytes: copied.meta.size,
        sha256: copied.sha256,
        lockWaitMs: lockWaitMsTotal,
        copyMs: copied.copyMs,
        verifyMs: copied.verifyMs,
        ...(copied.resumedBytes > 0 ? { resumedBytes: copied.resumedBytes } : {}),
        fencingToken: destinationLock.fencingToken,
      };
    } catch (caught) {
      const error = await lockLossBehind(caught, held);
      outcome = `failed: ${error instanceof ReasonError ? error.code : 'INTERNAL'}`;
      throw error;
    } finally {
      if (outcome !== 'source-gone')
        this.options.log.debug?.({ ...ids, releasingAt: Date.now(), outcome }, 'copy locks released');
      await Promise.allSettled(extras.map((h) => h.release()));
      await held.release();
    }
  }
}

/** Pieces a copy that reads from copies in progress got from each node (resumed ones not counted). */
type PiecesFrom = Map<string, { pieces: number; inProgress: boolean }>;

/** The log fields of PiecesFrom: pieces from verified holders and from copies in progress, and the nodes. */
export function piecesReadFrom(from: PiecesFrom): {
  fromVerified: number;
  fromCopiesInProgress: number;
  verifiedNodes: string[];
  copiesInProgress: string[];
} {
  const all = [...from].sort(([a], [b]) => a.localeCompare(b));
  const of = (inProgress: boolean) => all.filter(([, v]) => v.inProgress === inProgress);
  const sum = (list: typeof all) => list.reduce((n, [, v]) => n + v.pieces, 0);
  return {
    fromVerified: sum(of(false)),
    fromCopiesInProgress: sum(of(true)),
    verifiedNodes: of(false).map(([node]) => node),
    copiesInProgress: of(true).map(([node]) => node),
  };
}

/**
 * An I/O failure of a holder that no longer holds its locks is that loss, and is reported as LOCK_LOST:
 * a holder paused past the stale time after its last check finds its partial copy (or its meta file
 * being written) removed by the next holder of the destination lock, and its rename fails with ENOENT.
 */
async function lockLossBehind(error: unknown, held: HeldLockSet): Promise<unknown> {
  if (!(error instanceof ReasonError) || error.code !== 'IO_ERROR') return error;
  try {
    await held.assertStillHeld();
    return error;
  } catch (lost) {
    if (!(lost instanceof ReasonError)) return error;
    return new ReasonError('LOCK_LOST', `${lost.message}; then: ${error.message}`, { cause: error });
  }
}

/**
 * A lock folder the file system refuses is a fact about that node's cache, not a bug (INTERNAL): a
 * destination whose cache cannot be written is a read-only destination (DESTINATION_READ_ONLY, not
 * retried, as when its images folder refuses the copy); a full one is NO_SPACE; anything else (the
 * source's lock folder, a transient error) is a retryable IO_ERROR naming the folder. The destination is
 * probed for writing because the errno can be misleading: a recursive mkdir on a read-only file system
 * fails with ENOENT, not EROFS.
 */
async function lockFolderError(error: unknown, root: string, destination: string): Promise<unknown> {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (error instanceof ReasonError || typeof code !== 'string') return error;
  const where = (error as NodeJS.ErrnoException).path ?? '';
  const detail = `taking the locks: ${(error as Error).message}`;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new ReasonError('NO_SPACE', detail, { cause: error });
  const destinationDir = path.join(root, destination);
  if (where === destinationDir || where.startsWith(destinationDir + path.sep)) {
    const probe = await fsp.access(destinationDir, fsConstants.W_OK).then(
      () => undefined,
      (failure: NodeJS.ErrnoException) => failure.code,
    );
    const notWritable = ['EROFS', 'EACCES', 'EPERM'];
    if (notWritable.includes(code) || (probe !== undefined && notWritable.includes(probe)))
      return new ReasonError(
        'DESTINATION_READ_ONLY',
        `destination node ${destination}: ${detail} (${probe ?? code}): the cache is not writable`,
        { cause: error },
      );
  }
  return new ReasonError('IO_ERROR', detail, { cause: error });
}
