import * as path from 'node:path';
import { type GateClaim, ReaderClaim, lockLostError } from './held-lock';
import { Heartbeat } from './heartbeat';
import { readerEntryName } from './key-directory';
import { type LockFileSystem, isGone, syncFolder } from './lock-file-system';
import type { LockHolder, LockKey } from './lock-key';
import type { LockTimings } from './lock-timings';

/**
 * Readers of one key in one process admitted under one claim of its gate: the head waiter and the shared
 * waiters queued right behind it (in-process-queue.ts). On a network file system a gate claim is some
 * twenty round trips (look, clock, claim, check, give back) and a reader entry two: a fan-out's copies
 * of one source, queued in one conductor, are admitted together instead of one claim each (the large
 * pieces campaign on GlusterFS timed out on the source's gate, "turn in this process" and "gate").
 */
export const MAX_READER_BATCH = 32;

/** One reader's registration: its claim and loss, or why it failed (that reader alone fails). */
export type ReaderRegistration =
  { ok: true; claim: ReaderClaim; loss: AbortController } | { ok: false; error: unknown };

/** The readers one gate claim admits: the head's holder first, under `gate` in key folder `dir`. */
export interface ReaderBatch {
  key: LockKey;
  dir: string;
  holders: LockHolder[];
  gate: GateClaim;
  /** The gate claim's loss: aborted, no entry of the batch counts. */
  gateLost: AbortSignal;
  fs: LockFileSystem;
  timings: LockTimings;
}

/** What a shared waiter admitted along with the head gets. */
export interface ReaderGrant {
  registration: ReaderRegistration;
  fencingToken: number;
}

/**
 * The head's admission: registers every holder's entry under `gate` (the head's first), then gives the
 * gate back. A gate that cannot be given back fails them all: their entries are stopped, not left
 * beating with no lock behind them (that would keep the key in use for ever).
 */
export async function admitUnderGate(batch: ReaderBatch): Promise<ReaderRegistration[]> {
  const { holders, gate } = batch;
  const registrations = await registerReaders(batch).catch((error: unknown) =>
    holders.map((): ReaderRegistration => ({ ok: false, error })),
  );
  try {
    await gate.giveBack();
    return registrations;
  } catch (error) {
    await Promise.all(registrations.map((r) => r.ok && r.claim.heartbeat.stop().catch(() => undefined)));
    return holders.map(() => ({ ok: false, error }));
  }
}

/**
 * Registers one heartbeat entry per holder while `gate` is held, then checks once that the gate is
 * still ours. Every entry exists (and is fsynced) before that check, so each is covered by it exactly as
 * a lone reader's entry is by its own check (docs/locking.md, "Readers admitted together"): if we were
 * paused while registering, a writer may have taken the gate over and counted the readers without us,
 * and then none of these entries counts. The caller gives the gate back afterwards.
 */
export async function registerReaders(batch: ReaderBatch): Promise<ReaderRegistration[]> {
  const { key, dir, holders, gate, gateLost, fs, timings } = batch;
  const started = await Promise.all(holders.map((holder) => startEntry(key, dir, holder, fs, timings)));
  const live = started.filter((r): r is Extract<ReaderRegistration, { ok: true }> => r.ok);
  if (live.length === 0) return started;
  // A check that cannot be made (an I/O error) fails them all with that error, as a lost gate does.
  const stillOurs = gateLost.aborted
    ? { held: false }
    : await gate.stillHeld().then(
        (held) => ({ held }),
        (error: unknown) => ({ held: false, error }),
      );
  if (stillOurs.held) return started;
  await Promise.all(live.map((r) => r.claim.heartbeat.stop().catch(() => undefined)));
  const error =
    'error' in stillOurs ? stillOurs.error : lockLostError(key, 'gate lost while registering as a reader');
  return started.map((r) => (r.ok ? { ok: false, error } : r));
}

async function startEntry(
  key: LockKey,
  dir: string,
  holder: LockHolder,
  fs: LockFileSystem,
  timings: LockTimings,
): Promise<ReaderRegistration> {
  const loss = new AbortController();
  const heartbeat = new Heartbeat(path.join(dir, readerEntryName(holder)), timings, (reason) => {
    if (!loss.signal.aborted) loss.abort(lockLostError(key, reason));
  });
  try {
    await heartbeat.start();
  } catch (error) {
    // The key folder was removed by hand under the gate: that is a lost lock, retried like one.
    if (isGone(error))
      return {
        ok: false,
        error: lockLostError(key, 'the key folder was removed while registering as a reader'),
      };
    return { ok: false, error };
  }
  try {
    await syncFolder(fs, heartbeat.path); // a writer draining readers after us sees the entry at once
  } catch (error) {
    await heartbeat.stop().catch(() => undefined);
    return { ok: false, error };
  }
  return { ok: true, claim: new ReaderClaim(heartbeat, fs), loss };
}
