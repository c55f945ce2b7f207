import { performance } from 'node:perf_hooks';
import { isReasonError, errorText } from '@app/contracts';
import type { CacheEntry, ImageStore } from '@app/image-store';
import {
  type HeldLock,
  type LockKey,
  type NodeLockManager,
  inspectLocks,
  lockKeyString,
  newAttemptId,
  readLockActivity,
} from '@app/locking';
import type { CleanReport, DeletedImageReport, DeletionReason } from './clean-report';
import { type CleanerPolicy, TMP_SWEEP_AGE_MS, resolveCleanerPolicy } from './cleaner-policy';

/** Where the cleaner reports what it did (pino's loggers fit). */
export interface CleanerLogger {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  debug?(fields: object, message: string): void;
}

export interface CleanOptions extends Partial<CleanerPolicy> {
  /** Report what would be deleted; takes no lock and changes nothing. */
  dryRun?: boolean;
  /** Stops the run between two images (and any lock wait): the report so far is returned, `aborted`. */
  signal?: AbortSignal;
  /** The wall clock that image ages are measured against (tests); Date.now by default. */
  now?: () => number;
}

type Eviction =
  | { outcome: 'deleted'; deleted: DeletedImageReport }
  | { outcome: 'busy' | 'changed' | 'pinned' }
  | { outcome: 'error'; error: string };

/**
 * Evicts images from one node's cache by age and by size budget, the way OpenStack Nova's image cache
 * manager learned to on shared storage: every reader refreshes the image's last use under its shared lock,
 * and the cleaner deletes only under the image's EXCLUSIVE lock, after checking age, use and pin again
 * under that lock. So an image is never deleted while a copy reads it (the reader's shared lock keeps the
 * cleaner out) and never deleted just after a copy read it (the re-check sees the new lastUsedAt).
 *
 * Busy images are skipped, never waited for long: a cheap look at the lock folder first (readers or a
 * writer there: skip without touching the gate), then the exclusive lock with a short wait. Pinned images
 * (`<node>/pinned/<imageId>`) are never deleted. The same class runs inside conductors (on a schedule) and
 * in `icc cache clean`; both take the same locks, so they are safe beside each other.
 */
export class CacheCleaner {
  private readonly policy: CleanerPolicy;
  /**
   * Lock entries seen busy, by key: unchanged heartbeats for the stale time mean a dead holder. Not the
   * locking library's StalenessObserver, which watches one file: this watches a key's whole set of entries,
   * so a holder coming or going starts the watch again, and it is forgotten by key once the key is quiet.
   */
  private readonly busySightings = new Map<string, { signature: string; sinceMono: number }>();

  constructor(
    private readonly store: ImageStore,
    private readonly locks: NodeLockManager,
    policy: Partial<CleanerPolicy>,
    private readonly log: CleanerLogger,
  ) {
    this.policy = resolveCleanerPolicy(policy);
  }

  get defaults(): CleanerPolicy {
    return { ...this.policy };
  }

  async clean(node: string, options: CleanOptions = {}): Promise<CleanReport> {
    const { dryRun = false, signal, now = Date.now, ...overrides } = options;
    const policy = resolveCleanerPolicy(this.policy, overrides);
    const nodeId = this.store.nodeLayout(node).node;
    const started = performance.now();
    const report: CleanReport = {
      node: nodeId,
      dryRun,
      startedAt: new Date(now()).toISOString(),
      durationMs: 0,
      policy,
      examined: 0,
      deleted: [],
      keptPinned: [],
      skippedBusy: [],
      keptChanged: [],
      errors: [],
      tmpSwept: 0,
      litterRemoved: [],
      bytesBefore: 0,
      bytesFreed: 0,
      bytesAfter: 0,
      overBudget: false,
      aborted: false,
    };
    const entries = await this.store.entries.listEntries(nodeId);
    const pinned = await this.store.markers.listPinned(nodeId);
    report.examined = entries.length;
    let total = entries.reduce((sum, e) => sum + e.bytes, 0);
    report.bytesBefore = total;
    const seenAt = now();
    const tried = new Set<string>();

    const attempt = async (entry: CacheEntry, why: DeletionReason): Promise<void> => {
      tried.add(entry.imageId);
      if (pinned.has(entry.imageId)) {
        report.keptPinned.push(entry.imageId);
        return;
      }
      const result = await this.evict(nodeId, entry, why, policy, { dryRun, signal, now });
      switch (result.outcome) {
        case 'deleted':
          report.deleted.push(result.deleted);
          report.bytesFreed += result.deleted.size;
          total -= Math.min(total, result.deleted.size);
          break;
        case 'busy':
          report.skippedBusy.push(entry.imageId);
          break;
        case 'changed':
          report.keptChanged.push(entry.imageId);
          break;
        case 'pinned':
          report.keptPinned.push(entry.imageId);
          break;
        case 'error':
          report.errors.push({ imageId: entry.imageId, error: result.error });
          this.log.warn(
            { node: nodeId, imageId: entry.imageId, err: result.error },
            'cache cleaner: could not evict an image',
          );
          break;
      }
    };

    try {
      // First what no policy keeps: orphans, and images unused for longer than maxUnusedMs (oldest first).
      const firstPass = entries
        .map((entry) => ({ entry, why: reasonToEvict(entry, policy, seenAt) }))
        .filter((c): c is { entry: CacheEntry; why: DeletionReason } => c.why !== undefined)
        .sort((a, b) => lastUsedMs(a.entry) - lastUsedMs(b.entry));
      for (const { entry, why } of firstPass) {
        signal?.throwIfAborted();
        await attempt(entry, why);
      }
      // Then, while over budget, the least recently used, but never one used within graceMs.
      const budget = policy.budgetBytes;
      if (budget) {
        const lru = entries
          .filter((e) => e.meta && !tried.has(e.imageId))
          .sort((a, b) => lastUsedMs(a) - lastUsedMs(b));
        for (const entry of lru) {
          if (total <= budget) break;
          if (seenAt - lastUsedMs(entry) < policy.graceMs) break; // sorted: every later one is younger
          signal?.throwIfAborted();
          await attempt(entry, 'over-budget');
        }
      }
      try {
        // Litter is nobody's image: no lock decides it, only its age (see CacheEntries.removeLitter).
        report.litterRemoved = dryRun
          ? (await this.store.entries.listLitter(nodeId))
              .filter((l) => seenAt - l.changedMs >= policy.graceMs)
              .map((l) => l.name)
          : await this.store.entries.removeLitter(nodeId, policy.graceMs, now());
      } catch (error) {
        report.errors.push({ imageId: '(hidden files)', error: errorText(error) });
      }
      if (!dryRun) {
        try {
          report.tmpSwept = await this.store.entries.removeLeftoverTmp(nodeId, undefined, {
            olderThanMs: TMP_SWEEP_AGE_MS,
          });
        } catch (error) {
          report.errors.push({ imageId: '(tmp)', error: errorText(error) });
        }
      }
    } catch (error) {
      if (!signal?.aborted) throw error;
      report.aborted = true;
    }
    report.bytesAfter = total;
    report.overBudget = policy.budgetBytes !== undefined && total > policy.budgetBytes;
    report.durationMs = Math.round(performance.now() - started);
    return report;
  }

  private async evict(
    node: string,
    entry: CacheEntry,
    why: DeletionReason,
    policy: CleanerPolicy,
    run: { dryRun: boolean; signal?: AbortSignal; now: () => number },
  ): Promise<Eviction> {
    const key: LockKey = { node, imageId: entry.imageId };
    // A look at the lock folder before the gate: a copy reading or writing the image makes it busy, and
    // taking the gate now would only make new readers queue behind the cleaner.
    let timeoutMs = policy.lockWaitMs;
    const activity = await readLockActivity(this.store.root, key);
    if (activity.readers.length > 0 || activity.exclusive) {
      // Entries of a dead holder stay until a lock taker collects them; after their heartbeats were seen
      // unchanged for the stale time, wait long enough for the lock manager to take them over.
      if (!(await this.heldByTheDead(key))) {
        this.log.debug?.(
          { node, imageId: entry.imageId, readers: activity.readers.length, writer: activity.exclusive },
          'cache cleaner: image busy, skipped',
        );
        return { outcome: 'busy' };
      }
      timeoutMs += this.locks.timings.staleMs + 4 * this.locks.timings.pollMs;
    }
    this.busySightings.delete(lockKeyString(key));
    if (run.dryRun)
      return {
        outcome: 'deleted',
        deleted: { imageId: entry.imageId, size: entry.bytes, why, lastUsedAt: entry.meta?.lastUsedAt },
      };

    let lock: HeldLock;
    try {
      lock = await this.locks.acquire(
        { ...key, mode: 'exclusive' },
        { timeoutMs, signal: run.signal, attemptId: `clean-${newAttemptId()}` },
      );
    } catch (error) {
      if (run.signal?.aborted) throw error;
      if (isReasonError(error) && error.code === 'LOCK_TIMEOUT') return { outcome: 'busy' };
      return { outcome: 'error', error: errorText(error) };
    }
    const lockedAt = Date.now();
    try {
      // Under the exclusive lock nobody reads or writes the image: look again, the decision was made without it.
      if (await this.store.markers.isPinned(node, entry.imageId)) return { outcome: 'pinned' };
      const fresh = await this.store.entries.entry(node, entry.imageId);
      if (!stillQualifies(fresh, entry, why, policy, run.now())) {
        this.log.debug?.(
          { node, imageId: entry.imageId, why },
          'cache cleaner: image used or re-published meanwhile, kept',
        );
        return { outcome: 'changed' };
      }
      await lock.assertStillHeld(); // right before the irreversible step
      // Only the entry just judged: a delete that runs late (a paused or partitioned host) after another
      // holder published the image again leaves the new one in place.
      const removed = await this.store.entries.deleteImage(node, entry.imageId, fresh);
      if (removed.changed) {
        this.log.warn(
          { node, imageId: entry.imageId, why, fencingToken: lock.fencingToken },
          'cache cleaner: the image was published again before the delete ran (lock taken over?); kept',
        );
        return { outcome: 'changed' };
      }
      const deletedAt = Date.now();
      const deleted: DeletedImageReport = {
        imageId: entry.imageId,
        size: removed.bytes,
        why,
        lastUsedAt: fresh.meta?.lastUsedAt,
        lockedAt,
        deletedAt,
      };
      this.log.info(
        {
          node,
          imageId: entry.imageId,
          bytes: removed.bytes,
          why,
          lastUsedAt: fresh.meta?.lastUsedAt,
          fencingToken: lock.fencingToken,
        },
        'cache image deleted',
      );
      return { outcome: 'deleted', deleted };
    } catch (error) {
      return { outcome: 'error', error: errorText(error) };
    } finally {
      await lock
        .release()
        .catch((error: unknown) =>
          this.log.warn(
            { node, imageId: entry.imageId, err: errorText(error) },
            'cache cleaner: releasing a lock failed (it goes stale)',
          ),
        );
    }
  }

  /**
   * True once the same lock entries, with the same heartbeat mtimes, have been seen for at least the
   * stale time of our own monotonic clock (a live holder refreshes its heartbeat every update interval).
   */
  private async heldByTheDead(key: LockKey): Promise<boolean> {
    const { entries } = await inspectLocks(this.store.root, {
      node: key.node,
      imageId: key.imageId,
      staleMs: this.locks.timings.staleMs,
    });
    const signature = entries
      .map(
        (e) =>
          `${e.mode}:${e.holder?.conductorId ?? ''}/${e.holder?.attemptId ?? ''}:${e.generation ?? ''}:${e.heartbeatAt}`,
      )
      .join('|');
    const id = lockKeyString(key);
    const seen = this.busySightings.get(id);
    const nowMono = performance.now();
    if (signature === '' || !seen || seen.signature !== signature) {
      this.busySightings.set(id, { signature, sinceMono: nowMono });
      return false;
    }
    return nowMono - seen.sinceMono >= this.locks.timings.staleMs;
  }
}

function lastUsedMs(entry: CacheEntry): number {
  if (entry.meta) return Date.parse(entry.meta.lastUsedAt);
  return entry.modifiedMs ?? 0;
}

/** Why the entry should go whatever the budget, or undefined. */
function reasonToEvict(entry: CacheEntry, policy: CleanerPolicy, now: number): DeletionReason | undefined {
  if (!entry.meta) return isDeadOrphan(entry, policy, now) ? 'orphan' : undefined;
  return now - Date.parse(entry.meta.lastUsedAt) > policy.maxUnusedMs ? 'unused' : undefined;
}

/**
 * An image file without valid meta is what a publish looks like between its rename and its meta write,
 * so only an old one is an orphan; a meta without its image is never a step of a publish.
 */
function isDeadOrphan(entry: CacheEntry, policy: CleanerPolicy, now: number): boolean {
  return entry.modifiedMs === undefined || now - entry.modifiedMs >= policy.graceMs;
}

/** The same decision, made again under the lock with what is on disk now. */
function stillQualifies(
  fresh: CacheEntry,
  seen: CacheEntry,
  why: DeletionReason,
  policy: CleanerPolicy,
  now: number,
): boolean {
  switch (why) {
    case 'orphan':
      return !fresh.meta && isDeadOrphan(fresh, policy, now);
    case 'unused':
      return fresh.meta !== undefined && now - Date.parse(fresh.meta.lastUsedAt) > policy.maxUnusedMs;
    case 'over-budget':
      // Used since it was chosen: it is no longer the least recently used one.
      return (
        fresh.meta !== undefined &&
        fresh.meta.lastUsedAt === seen.meta?.lastUsedAt &&
        now - Date.parse(fresh.meta.lastUsedAt) >= policy.graceMs
      );
  }
}
