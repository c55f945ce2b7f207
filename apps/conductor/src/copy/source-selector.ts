import { performance } from 'node:perf_hooks';
import { type CopyPriority, ReasonError } from '@app/contracts';
import type { ImageMeta, ImageStore } from '@app/image-store';
import { readLockActivity } from '@app/locking';
import type { CopyJob } from './copy-job';
import type { ImageHolderIndex } from './holder-index';
import { ReadSlots, type ReadSlotsView } from './read-slots';

export interface SourceSelectorOptions {
  index: ImageHolderIndex;
  /** NODE_READ_LIMIT: reads of one source node this conductor runs at once. */
  readLimit: number;
  /** This conductor's id, to tell its own reader entries from other conductors' in the lock folders. */
  conductorId: string;
  /** Holders whose lock folder is read to compare cell-wide load (the rest are only a fallback). */
  sampleSize?: number;
  /** Re-look interval while waiting for a slot, for changes nobody tells us about (other conductors). */
  recheckMs?: number;
  random?: () => number;
}

/** A chosen source with one of its read slots held: `release` gives the slot back (once). */
export interface PickedSource {
  node: string;
  meta: ImageMeta;
  /** Time spent waiting for a read slot (0 when one was free at once). */
  slotWaitMs: number;
  release: () => void;
}

type Holder = { node: string; meta: ImageMeta };
type Choice =
  | { found: Holder & { free: boolean } }
  | { found?: undefined; mismatched: Holder[]; draining: string[]; unregistered: string[] };

/** Every error of source selection says so: a SOURCE_MISSING with this prefix happened before any lock. */
export const SELECTION_PREFIX = 'source selection: ';

/** No node of the cell holds the image at all (none with other bytes either): the origin's case. */
export class NoHolderError extends ReasonError {
  constructor(message: string) {
    super('SOURCE_MISSING', message);
  }
}

/**
 * Chooses the node to copy from and holds one of its read slots until the copy is done.
 *
 * A named source is used if it holds a verified copy. Otherwise the candidates are the nodes the holder
 * index names (no scan over all nodes per request), minus the destination, nodes marked draining
 * (`<CACHE_ROOT>/<node>/draining`) and nodes not registered (no valid `<CACHE_ROOT>/<node>/node.json`). Preference: a node with a free read slot here, then the fewest reads
 * running cell-wide: the `r~` reader entries in `<node>/locks/<imageId>/` of other conductors (one readdir
 * per sampled candidate) plus this conductor's own slots in use. The file-system cost per request is
 * bounded by `sampleSize`, whatever the number of nodes. When every candidate is at NODE_READ_LIMIT the
 * copy waits (within its lock wait) for a slot to free or a new holder to appear: a fan-out to many nodes
 * thus reads from the nodes that finished first, not from the origin alone.
 */
export class SourceSelector {
  readonly slots: ReadSlots;
  private version = 0;
  /** Interactive copies waiting for a read slot, by the node they wait for. */
  private readonly interactiveWaiting = new Map<string, number>();
  private readonly wakers = new Set<() => void>();
  /** Piece reads waiting for a slot, by node: woken only by a slot of their node (slotFreed). */
  private readonly slotWaiters = new Map<string, Array<() => void>>();
  private readonly sampleSize: number;
  private readonly recheckMs: number;
  private readonly random: () => number;

  constructor(
    private readonly store: ImageStore,
    private readonly options: SourceSelectorOptions,
  ) {
    this.slots = new ReadSlots(options.readLimit);
    this.sampleSize = options.sampleSize ?? 4;
    this.recheckMs = options.recheckMs ?? 500;
    this.random = options.random ?? Math.random;
    this.slots.onRelease((node) => {
      this.bump();
      const waiting = this.slotWaiters.get(node);
      this.slotWaiters.delete(node);
      for (const wake of waiting ?? []) wake();
    });
    options.index.onLearn(() => this.bump());
  }

  /**
   * Picks a source and takes a read slot on it, waiting up to `timeoutMs` for one (then LOCK_TIMEOUT).
   * With `perPieceSlots` (a copy that takes a slot for each piece it reads, swarm-holders.ts) it only picks.
   */
  async acquire(
    job: CopyJob,
    options: { timeoutMs: number; signal?: AbortSignal; perPieceSlots?: boolean },
  ): Promise<PickedSource> {
    if (options.perPieceSlots) {
      const choice = await this.choose(job);
      return { node: choice.node, meta: choice.meta, slotWaitMs: 0, release: () => undefined };
    }
    const started = performance.now();
    const background = job.priority === 'background';
    // An interactive copy counts as waiting for its node until it has a slot (or gives up), so that a
    // background copy woken by the same release does not take the slot first.
    let waitingFor: string | undefined;
    try {
      return await this.acquireLoop(job, options, started, background, (node) => {
        waitingFor = this.markWaiting(waitingFor, node);
      });
    } finally {
      // A background copy that yielded to this one looks again.
      if (waitingFor !== undefined) {
        this.markWaiting(waitingFor, undefined);
        this.bump();
      }
    }
  }

  private async acquireLoop(
    job: CopyJob,
    options: { timeoutMs: number; signal?: AbortSignal },
    started: number,
    background: boolean,
    waiting: (node: string) => void,
  ): Promise<PickedSource> {
    let waitedMs = 0; // only time spent waiting for a slot, not the look-ups
    for (;;) {
      options.signal?.throwIfAborted();
      const seen = this.version;
      const choice = await this.choose(job);
      // Interactive first: a background copy leaves a free slot to an interactive copy waiting for the node.
      const yieldsSlot = background && (this.interactiveWaiting.get(choice.node) ?? 0) > 0;
      if (choice.free && !yieldsSlot) {
        const release = this.slots.tryTake(choice.node);
        if (release) return { node: choice.node, meta: choice.meta, slotWaitMs: waitedMs, release };
      }
      const left = options.timeoutMs - (performance.now() - started);
      if (left <= 0)
        throw new ReasonError(
          'LOCK_TIMEOUT',
          `waited ${options.timeoutMs} ms for a read slot on ${job.source ? `node ${job.source}` : `a node holding ${job.imageId} (best: ${choice.node})`}: NODE_READ_LIMIT=${this.slots.limit} reads per source node in this conductor`,
        );
      const waitStarted = performance.now();
      if (!background) waiting(choice.node);
      await this.changeSince(seen, Math.min(left, this.recheckMs), options.signal);
      waitedMs += performance.now() - waitStarted;
    }
  }

  /** Moves an interactive waiter's mark from node `from` to `to` (either may be undefined). */
  private markWaiting(from: string | undefined, to: string | undefined): string | undefined {
    if (from === to) return to;
    if (from !== undefined) {
      const left = (this.interactiveWaiting.get(from) ?? 1) - 1;
      if (left > 0) this.interactiveWaiting.set(from, left);
      else this.interactiveWaiting.delete(from);
    }
    if (to !== undefined) this.interactiveWaiting.set(to, (this.interactiveWaiting.get(to) ?? 0) + 1);
    return to;
  }

  /**
   * A read slot on `node` for one piece of a copy that takes slots per piece, if one is free now; a
   * background copy leaves it to an interactive copy waiting for the node, as acquire does.
   */
  tryTakePieceSlot(node: string, priority: CopyPriority): (() => void) | undefined {
    if (priority === 'background' && (this.interactiveWaiting.get(node) ?? 0) > 0) return undefined;
    return this.slots.tryTake(node);
  }

  /**
   * Resolves once a read slot of `node` is given back. Per node: a fan-out has a piece read waiting on
   * nearly every node, and waking them all at every slot given back anywhere kept a conductor's thread
   * busy with loops that found their own node still full.
   */
  slotFreed(node: string): Promise<void> {
    return new Promise((resolve) => {
      const waiting = this.slotWaiters.get(node);
      if (waiting) waiting.push(resolve);
      else this.slotWaiters.set(node, [resolve]);
    });
  }

  /** A verified holder this conductor just published (or found): a source for the next requests at once. */
  learnHolder(node: string, imageId: string): void {
    this.options.index.learn(node, imageId);
  }

  /** A node the index named but that holds no verified copy (any more). */
  forgetHolder(node: string, imageId: string): void {
    this.options.index.forget(node, imageId);
  }

  /**
   * Up to `limit` more verified holders of the image a copy reads from `meta` (same sha256 and size), for
   * a copy that reads from several at once: registered, not draining, neither the destination nor in
   * `exclude`, with a free read slot here (and, for a background copy, no interactive copy waiting for
   * one). No wait: a helper is taken only when it is free now. Looks at most at sampleSize × limit holders.
   */
  async helperCandidates(
    job: CopyJob,
    exclude: readonly string[],
    meta: Pick<ImageMeta, 'sha256' | 'size'>,
    limit: number,
  ): Promise<string[]> {
    const free = (node: string) =>
      this.slots.hasFree(node) &&
      !(job.priority === 'background' && (this.interactiveWaiting.get(node) ?? 0) > 0);
    const candidates = shuffle(
      [...(await this.options.index.holdersOf(job.imageId))].filter(
        (node) => node !== job.destination && !exclude.includes(node) && free(node),
      ),
      this.random,
    );
    const found: string[] = [];
    for (const node of candidates.slice(0, this.sampleSize * limit)) {
      if (found.length >= limit) break;
      const held = await this.store.copies.verifiedImage(node, job.imageId, meta);
      if (
        !held ||
        !(await this.store.markers.isRegistered(node)) ||
        (await this.store.markers.isDraining(node))
      )
        continue;
      found.push(node);
    }
    return found;
  }

  readSlots(): ReadSlotsView {
    return this.slots.view();
  }

  /** This conductor's reads of `node` running now. */
  reads(node: string): number {
    return this.slots.inUse(node);
  }

  private async choose(job: CopyJob): Promise<Holder & { free: boolean }> {
    // Holders are looked up without the request's expectations, so that a holder of other bytes is
    // reported as the mismatch it is (CHECKSUM_MISMATCH / SIZE_MISMATCH), not as a missing source.
    if (job.source) {
      const { meta, problem } = await this.store.entries.inspectImage(job.source, job.imageId);
      if (!meta) {
        await this.options.index.confirmRoot(`node ${job.source} holds no verified copy of ${job.imageId}`);
        throw new ReasonError(
          'SOURCE_MISSING',
          `${SELECTION_PREFIX}node ${job.source} holds no verified copy of ${job.imageId} (${problem})`,
        );
      }
      const mismatch = mismatchOf(job, [{ node: job.source, meta }]);
      if (mismatch) throw mismatch;
      return { node: job.source, meta, free: this.slots.hasFree(job.source) };
    }
    let choice = await this.bestOf(job, await this.options.index.holdersOf(job.imageId));
    // Nothing usable: the index may be behind (an image seeded or copied by someone else): look again.
    if (!choice.found && choice.mismatched.length === 0)
      choice = await this.bestOf(job, await this.options.index.holdersAfterMiss(job.imageId));
    if (choice.found) return choice.found;
    if (choice.mismatched.length > 0) throw mismatchOf(job, choice.mismatched)!;
    // A final "nobody": only if CACHE_ROOT is still the cell's folder after the looks that found nothing
    // (the miss's scan confirmed it before its listings). Else the looks may have read a dead mount.
    await this.options.index.confirmRoot(`no node was seen to hold a verified copy of ${job.imageId}`);
    const draining =
      choice.draining.length > 0
        ? ` (nodes draining, not used as sources: ${choice.draining.slice(0, 5).join(', ')})`
        : '';
    const unregistered =
      choice.unregistered.length > 0
        ? ` (nodes not registered, not used as sources: ${choice.unregistered.slice(0, 5).join(', ')})`
        : '';
    throw new NoHolderError(
      `${SELECTION_PREFIX}no node holds a verified copy of ${job.imageId}${draining}${unregistered}`,
    );
  }

  private async bestOf(job: CopyJob, holders: ReadonlySet<string>): Promise<Choice> {
    const candidates = shuffle(
      [...holders].filter((node) => node !== job.destination),
      this.random,
    );
    // In memory first: free slots here, then fewest of our own reads (stable sort keeps the shuffle for ties).
    candidates.sort(
      (a, b) =>
        Number(!this.slots.hasFree(a)) - Number(!this.slots.hasFree(b)) ||
        this.slots.inUse(a) - this.slots.inUse(b),
    );
    const sample = candidates.slice(0, this.sampleSize);
    const load = new Map(
      await Promise.all(
        sample.map(async (node) => [node, await this.cellWideLoad(node, job.imageId)] as const),
      ),
    );
    sample.sort(
      (a, b) =>
        Number(!this.slots.hasFree(a)) - Number(!this.slots.hasFree(b)) ||
        load.get(a)! - load.get(b)! ||
        this.slots.inUse(a) - this.slots.inUse(b),
    );
    const mismatched: Holder[] = [];
    const draining: string[] = [];
    const unregistered: string[] = [];
    for (const node of [...sample, ...candidates.slice(this.sampleSize)]) {
      const meta = await this.store.copies.verifiedImage(node, job.imageId);
      if (!meta) {
        this.options.index.forget(node, job.imageId);
        continue;
      }
      // A folder without a valid marker is not a node of the cell (unregistered, or its marker is broken).
      if (!(await this.store.markers.isRegistered(node))) {
        unregistered.push(node);
        continue;
      }
      if (!matchesJob(job, meta)) {
        mismatched.push({ node, meta });
        continue;
      }
      if (await this.store.markers.isDraining(node)) {
        draining.push(node);
        continue;
      }
      return { found: { node, meta, free: this.slots.hasFree(node) } };
    }
    return { mismatched, draining, unregistered };
  }

  /**
   * Reads of the image on `node` cell-wide: other conductors' reader entries in its lock folder, plus our
   * own slots in use (our entries are not counted twice). A writer on the key (the cache cleaner, say)
   * makes readers queue: counted as a full node.
   */
  private async cellWideLoad(node: string, imageId: string): Promise<number> {
    try {
      const activity = await readLockActivity(this.store.root, { node, imageId });
      const others = activity.readers.filter((h) => h.conductorId !== this.options.conductorId).length;
      return others + this.slots.inUse(node) + (activity.exclusive ? this.slots.limit : 0);
    } catch {
      return this.slots.inUse(node); // the lock folder is only a hint
    }
  }

  private bump(): void {
    this.version += 1;
    for (const wake of this.wakers) wake();
  }

  /** Resolves when a slot was given back or a holder learned since `seen`, or after `ms`. */
  private changeSince(seen: number, ms: number, signal?: AbortSignal): Promise<void> {
    if (this.version !== seen) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.wakers.delete(done);
        signal?.removeEventListener('abort', aborted);
        resolve();
      };
      const aborted = () => {
        done();
        reject(signal!.reason);
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
      signal?.addEventListener('abort', aborted, { once: true });
    });
  }
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

function matchesJob(job: CopyJob, meta: ImageMeta): boolean {
  return (
    (job.sha256 === undefined || meta.sha256 === job.sha256) &&
    (job.size === undefined || meta.size === job.size)
  );
}

/** The error for holders none of which has the requested bytes (a checksum difference wins over size). */
function mismatchOf(
  job: CopyJob,
  holders: Array<{ node: string; meta: ImageMeta }>,
): ReasonError | undefined {
  if (holders.some((h) => matchesJob(job, h.meta))) return undefined;
  const shown = holders
    .slice(0, 5)
    .map((h) => `node ${h.node} has sha256 ${h.meta.sha256}, ${h.meta.size} bytes`);
  const held =
    shown.join('; ') +
    (holders.length > shown.length ? `; and ${holders.length - shown.length} more nodes` : '');
  const checksumDiffers = job.sha256 !== undefined && holders.some((h) => h.meta.sha256 !== job.sha256);
  return checksumDiffers
    ? new ReasonError(
        'CHECKSUM_MISMATCH',
        `image ${job.imageId}: the request expects sha256 ${job.sha256} but ${held}; nothing was copied`,
      )
    : new ReasonError(
        'SIZE_MISMATCH',
        `image ${job.imageId}: the request expects ${job.size} bytes but ${held}; nothing was copied`,
      );
}
