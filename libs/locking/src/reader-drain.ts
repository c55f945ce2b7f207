import * as path from 'node:path';
import type { Deadline } from './deadline';
import { DirectoryChangeWaiter } from './directory-change-waiter';
import { type GateClaim, lockLostError } from './held-lock';
import { readKeyDirectory } from './key-directory';
import { type LockFileSystem, openForSync } from './lock-file-system';
import type { LockKey } from './lock-key';
import type { LockEvent } from './lock-manager-options';
import type { LockTimings } from './lock-timings';
import type { PollBudget } from './poll-budget';
import { pollIntervalMs } from './poll-pacing';
import type { StalenessObserver } from './staleness-observer';

export interface ReaderDrain {
  key: LockKey;
  /** The key folder. */
  dir: string;
  deadline: Deadline;
  /** The gate the writer holds while it waits. */
  gate: GateClaim;
  /** Aborts when the gate is lost. */
  lost: AbortSignal;
  /** Watches the reader entries: one judged frozen for the stale time is removed. */
  observer: StalenessObserver;
  fs: LockFileSystem;
  /** Whether the key folder may be watched (StepFileSystem.watchable). */
  watch: boolean;
  timings: LockTimings;
  /** The manager's turns to poll: each look at the readers takes one, a removal does not. */
  polls: PollBudget;
  emit: (event: LockEvent) => void;
}

/**
 * Holding the gate, waits until no live reader is left; readers whose heartbeat stopped are removed
 * (docs/locking.md, "Shared mode").
 */
export async function drainReaders(d: ReaderDrain): Promise<void> {
  const { key, dir, deadline, gate, lost, observer, fs } = d;
  const waiter = new DirectoryChangeWaiter(dir, d.watch);
  try {
    for (;;) {
      deadline.throwIfOver();
      if (lost.aborted) throw lost.reason;
      const { result: readers, ms } = await d.polls.run(deadline.signal, () =>
        lookAtReaders(dir, fs, observer),
      );
      let live = 0;
      let nextLook = pollIntervalMs(d.timings, ms);
      for (const { entry, entryPath, stale } of readers) {
        if (stale) {
          // Only a gate holder removes reader entries, and readers register only under the gate,
          // so this cannot race with a registration; a paused reader finds its entry gone. A removal
          // cannot be taken back: check the gate right before it, as before any irreversible step.
          if (!(await gate.stillHeld()))
            throw lost.aborted ? lost.reason : lockLostError(key, 'gate lost while draining readers');
          const folder = await openForSync(fs, dir);
          await fs.rm(entryPath, { recursive: true, force: true });
          void folder.sync().then(() => folder.close()); // not awaited: see ReaderClaim.giveBack
          d.emit({ type: 'stale-reader-removed', key, entry });
        } else {
          live++;
          nextLook = Math.min(nextLook, observer.remainingMs(entryPath) + 1);
        }
      }
      if (live === 0) return;
      await waiter.wait(nextLook, deadline.signal);
    }
  } finally {
    waiter.close();
  }
}

/** One look at the reader entries of a key folder, each judged stale (watched frozen) or not. */
async function lookAtReaders(dir: string, fs: LockFileSystem, observer: StalenessObserver) {
  const { readers } = await readKeyDirectory(dir, fs);
  const judged: Array<{ entry: string; entryPath: string; stale: boolean }> = [];
  for (const entry of readers) {
    const entryPath = path.join(dir, entry);
    judged.push({ entry, entryPath, stale: await observer.isStale(entryPath) });
  }
  return judged;
}
