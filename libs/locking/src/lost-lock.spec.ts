import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HeldLock } from './held-lock';
import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';
import { tempManagers } from './temp-managers.fixture';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
/** Long enough for a takeover (watch a frozen heartbeat for staleMs), short of "it waits for ever". */
const WAIT = { timeoutMs: 5 * FAST.staleMs };

/** A file system whose `stat` of one entry fails once the test arms it: the holder's check cannot prove its lock. */
class FailingCheck implements LockFileSystem {
  private target?: string;

  failStatOf(target: string): void {
    this.target = target;
  }

  async stat(target: string) {
    if (target === this.target)
      throw Object.assign(new Error(`EIO: i/o error, stat '${target}'`), { code: 'EIO' });
    return nodeLockFileSystem.stat(target);
  }

  readdir = nodeLockFileSystem.readdir;
  mkdir = nodeLockFileSystem.mkdir;
  rm = nodeLockFileSystem.rm;
  rename = nodeLockFileSystem.rename;
}

/**
 * A holder told its lock is lost must stop refreshing its heartbeat at once, even before it calls
 * release(): a waiter then sees the heartbeat frozen and takes over after LOCK_STALE_MS, instead of
 * watching a "live" heartbeat until its whole wait runs out.
 */
describe('a lost lock stops beating at once', () => {
  const bed = tempManagers('icc-lost-', FAST);
  const manager = bed.manager;

  const heartbeatOf = (lock: HeldLock): string => {
    const keyDir = path.join(bed.root, lock.key.node, 'locks', lock.key.imageId);
    const name = `${lock.mode === 'exclusive' ? 'h' : 'r'}~${lock.holder.conductorId}~${lock.holder.attemptId}`;
    return lock.mode === 'exclusive'
      ? path.join(keyDir, `g-${lock.fencingToken}`, name)
      : path.join(keyDir, name);
  };

  it('exclusive: a waiter takes over a holder that found its lock lost and has not released it', async () => {
    const fs = new FailingCheck();
    const key = { node: 'n1', imageId: 'img', mode: 'exclusive' as const };
    const holder = await manager('a', fs).acquire(key, WAIT);
    fs.failStatOf(heartbeatOf(holder));
    await expect(holder.assertStillHeld()).rejects.toMatchObject({ code: 'LOCK_LOST' });
    // The holder keeps its lock object (its copy is still winding down): no release() yet.
    const taken = await manager('b').acquire(key, WAIT);
    expect(taken.tookOverStale).toBe(true);
    expect(taken.fencingToken).toBeGreaterThan(holder.fencingToken);
    expect(await taken.isStillHeld()).toBe(true);
    // Its late release neither fails nor disturbs the new holder.
    await holder.release();
    expect(await taken.isStillHeld()).toBe(true);
  });

  it('shared: a writer removes the entry of a reader that found its lock lost and has not released it', async () => {
    const fs = new FailingCheck();
    const key = { node: 'src', imageId: 'img' };
    const reader = await manager('r', fs).acquire({ ...key, mode: 'shared' }, WAIT);
    fs.failStatOf(heartbeatOf(reader));
    await expect(reader.assertStillHeld()).rejects.toMatchObject({ code: 'LOCK_LOST' });
    const writer = await manager('w').acquire({ ...key, mode: 'exclusive' }, WAIT);
    expect(await writer.isStillHeld()).toBe(true);
    await reader.release();
  });

  it('shared: a reader whose heartbeat was compromised leaves no entry behind when it releases', async () => {
    const reader = await manager('r').acquire({ node: 'src', imageId: 'img', mode: 'shared' }, WAIT);
    const entry = heartbeatOf(reader);
    // Another process touches the entry: proper-lockfile's next refresh finds an mtime not its own.
    await fsp.utimes(entry, new Date(2000, 0, 1), new Date(2000, 0, 1));
    await new Promise((resolve) => reader.signal.addEventListener('abort', resolve, { once: true }));
    await reader.release();
    // Left behind, the entry would hold every writer of this source up for LOCK_STALE_MS.
    expect(await fsp.readdir(path.dirname(entry))).not.toContain(path.basename(entry));
  });
});
