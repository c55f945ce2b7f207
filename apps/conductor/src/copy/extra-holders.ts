import type { CopyPriority } from '@app/contracts';
import type { ImageMeta, ImageStore } from '@app/image-store';
import type { NodeLockManager } from '@app/locking';
import type { CopyJob } from './copy-job';
import { MAX_HOLDERS_PER_COPY, wantsAnotherHolder } from './holder-plan';
import type { NodeBandwidth } from './node-bandwidth';
import type { SourceSelector } from './source-selector';

/**
 * How long a copy that already holds its locks waits for a further holder's shared lock. Short and
 * bounded: the copy holds the destination's exclusive lock while it waits, outside the global key order,
 * so a wait here must never be one a cycle could make endless; a holder not granted at once is skipped.
 */
export const EXTRA_HOLDER_LOCK_WAIT_MS = 200;

/** A further holder a copy reads from: its read slot and shared lock, given back by `release` (once). */
export interface ExtraHolder {
  node: string;
  /** Fires when its shared lock is lost: the copy drops it and goes on with the others. */
  lost: AbortSignal;
  assertStillHeld(): Promise<void>;
  release(): Promise<void>;
}

export interface ExtraHolderDeps {
  store: ImageStore;
  locks: NodeLockManager;
  sources: SourceSelector;
  bandwidth?: NodeBandwidth;
}

/**
 * The further holders a copy from `source` reads other pieces from, each with a free read slot and its
 * own shared lock, re-checked under it: none unless the copy chose its source itself (a named source is
 * the only one asked for) and holder-plan.ts says the caps make more holders faster. The caller holds the
 * source's shared and the destination's exclusive lock, and releases every holder returned.
 */
export async function takeExtraHolders(
  deps: ExtraHolderDeps,
  job: CopyJob,
  source: { node: string; meta: Pick<ImageMeta, 'sha256' | 'size'> },
  run: { attemptId: string; signal?: AbortSignal; priority: CopyPriority; perPieceSlots?: boolean },
): Promise<ExtraHolder[]> {
  const { bandwidth } = deps;
  if (job.source !== undefined || !bandwidth) return [];
  const rates = [bandwidth.rateOf('read', source.node, run.priority)];
  const writeBps = bandwidth.rateOf('write', job.destination, run.priority);
  if (!wantsAnotherHolder(rates, writeBps)) return [];
  const candidates = await deps.sources.helperCandidates(
    job,
    [source.node],
    source.meta,
    MAX_HOLDERS_PER_COPY - 1,
  );
  const taken: ExtraHolder[] = [];
  try {
    for (const node of candidates) {
      if (!wantsAnotherHolder(rates, writeBps)) break;
      const holder = await takeOne(deps, job, node, source.meta, run);
      if (!holder) continue;
      taken.push(holder);
      rates.push(bandwidth.rateOf('read', node, run.priority));
    }
  } catch (error) {
    await Promise.allSettled(taken.map((h) => h.release()));
    throw error;
  }
  return taken;
}

/** A read slot and the shared lock of `node`, if both are free now and it still holds the same image. */
async function takeOne(
  deps: ExtraHolderDeps,
  job: CopyJob,
  node: string,
  meta: Pick<ImageMeta, 'sha256' | 'size'>,
  run: { attemptId: string; signal?: AbortSignal; perPieceSlots?: boolean },
): Promise<ExtraHolder | undefined> {
  // A copy that takes a read slot per piece (reading from copies in progress too) holds none for the copy.
  const slot = run.perPieceSlots ? () => undefined : deps.sources.slots.tryTake(node);
  if (!slot) return undefined;
  const held = await deps.locks
    .acquireAll([{ node, imageId: job.imageId, mode: 'shared' }], {
      attemptId: run.attemptId,
      timeoutMs: EXTRA_HOLDER_LOCK_WAIT_MS,
      signal: run.signal,
    })
    .catch(() => undefined);
  if (!held) {
    slot();
    run.signal?.throwIfAborted();
    return undefined;
  }
  const release = async () => {
    try {
      await held.release();
    } finally {
      slot();
    }
  };
  // Chosen without its lock: under it, the cache cleaner can no longer remove it, but it may have already.
  const still = await deps.store.copies.verifiedImage(node, job.imageId, meta).catch(() => undefined);
  if (!still) {
    await release().catch(() => undefined);
    return undefined;
  }
  return { node, lost: held.signal, assertStillHeld: () => held.assertStillHeld(), release };
}
