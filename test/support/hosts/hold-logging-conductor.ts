/*
 * The conductor, with a hold log for the across-hosts campaign: every moment this process proves it holds
 * a lock (the lock is granted; a check of `isStillHeld`, which `assertStillHeld` and the watchdog use,
 * succeeds) is appended to HOLD_LOG, a local file outside the shared folder, stamped with the machine's
 * monotonic clock (process.hrtime: CLOCK_MONOTONIC, one clock for every process of the machine, whatever
 * the hosts' mounts or wall clocks say). The campaign judges overlapping holders from these logs alone.
 * Written synchronously, so a SIGKILL right after a proof cannot lose it.
 */
import { appendFileSync } from 'node:fs';
import { HeldLock, NodeLockManager } from '@app/locking';
import { compiled } from '../child-processes';

/** One line of a hold log. */
export interface HoldProof {
  /** granted: acquireAll returned it (stamped at its creation); proven: a successful check began then. */
  event: 'granted' | 'proven';
  node: string;
  imageId: string;
  mode: 'exclusive' | 'shared';
  conductorId: string;
  attemptId: string;
  fencingToken: number;
  tookOverStale: boolean;
  monoMs: number;
}

const monoMs = () => Number(process.hrtime.bigint()) / 1e6;

function record(file: string, lock: HeldLock, event: HoldProof['event'], at: number): void {
  const line: HoldProof = {
    event,
    node: lock.key.node,
    imageId: lock.key.imageId,
    mode: lock.mode,
    conductorId: lock.holder.conductorId,
    attemptId: lock.holder.attemptId,
    fencingToken: lock.fencingToken,
    tookOverStale: lock.tookOverStale,
    monoMs: at,
  };
  appendFileSync(file, JSON.stringify(line) + '\n');
}

const file = process.env.HOLD_LOG;
if (!file) {
  process.stderr.write('hold-logging-conductor: HOLD_LOG (a local file outside CACHE_ROOT) is required\n');
  process.exit(2);
}

const acquireAll = NodeLockManager.prototype.acquireAll;
NodeLockManager.prototype.acquireAll = async function (this: NodeLockManager, ...args) {
  const set = await acquireAll.apply(this, args);
  const now = monoMs();
  // The lock's own age tells when it was created, i.e. right after its claim was proven on disk.
  for (const lock of set.locks) record(file, lock, 'granted', now - lock.heldMs);
  return set;
};
const isStillHeld = HeldLock.prototype.isStillHeld;
HeldLock.prototype.isStillHeld = async function (this: HeldLock) {
  // The check trusts the heartbeat as of its start: that is the moment it proves.
  const started = monoMs();
  const held = await isStillHeld.call(this);
  if (held) record(file, this, 'proven', started);
  return held;
};

// Loaded at run time (compiled), as a test may not import the conductor's code.
void import(compiled('apps/conductor/src/main.ts')).then((entry: { main: () => void }) => entry.main());
