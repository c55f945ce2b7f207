import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';
import { tempManagers } from './temp-managers.fixture';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const WAIT = { timeoutMs: 5 * FAST.staleMs };
const KEY = { node: 'n1', imageId: 'img', mode: 'exclusive' as const };

/** Node's error for ESTALE: libuv has no name for it (seen on the GlusterFS bed, seed 24202). */
function estale(syscall: string, target: string): NodeJS.ErrnoException {
  return Object.assign(
    new Error(`Unknown system error -116: Unknown system error -116, ${syscall} '${target}'`),
    {
      errno: -116,
      code: 'Unknown system error -116',
      syscall,
      path: target,
    },
  );
}

type Call = 'readdir' | 'stat' | 'mkdir';

/**
 * GlusterFS's (and NFS's) answer for a folder another client removed since this client last looked it up:
 * ESTALE, where a local disk says ENOENT. The next `times` calls of `call` on a matching path fail so.
 */
class StaleHandles implements LockFileSystem {
  readonly failed: string[] = [];
  private quirk?: { call: Call; match: RegExp; times: number };

  next(call: Call, match: RegExp, times = 1): void {
    this.quirk = { call, match, times };
  }

  private fail(call: Call, target: string): void {
    const quirk = this.quirk;
    if (!quirk || quirk.call !== call || quirk.times <= 0 || !quirk.match.test(target)) return;
    quirk.times--;
    this.failed.push(`${call} ${path.basename(target)}`);
    throw estale(call === 'readdir' ? 'scandir' : call, target);
  }

  readdir = async (dir: string) => {
    this.fail('readdir', dir);
    return nodeLockFileSystem.readdir(dir);
  };
  stat = async (target: string) => {
    this.fail('stat', target);
    return nodeLockFileSystem.stat(target);
  };
  mkdir = async (dir: string, options?: { recursive?: boolean }) => {
    this.fail('mkdir', dir);
    return nodeLockFileSystem.mkdir(dir, options);
  };
  rm = nodeLockFileSystem.rm;
  rename = nodeLockFileSystem.rename;
}

describe('ESTALE (a folder another client removed) reads as gone, through the lock manager file-system seam', () => {
  const bed = tempManagers('icc-estale-', FAST);
  const manager = bed.manager;

  it.each([
    ['readdir', /\/g-\d+$/, 'the held generation folder'],
    ['stat', /\/g-\d+\/h~[^/]+$/, "its holder's heartbeat"],
    ['readdir', /\/locks\/img$/, 'the key folder'],
    ['stat', /\/epoch$/, 'the epoch'],
    ['mkdir', /\/g-\d+$/, 'its claim'],
  ] as const)(
    'a waiter whose look at %s of %s meets ESTALE looks again and gets the lock at the hand-over',
    async (call, match, _what) => {
      const first = await manager('a').acquire(KEY, WAIT);
      const fs = new StaleHandles();
      fs.next(call, match);
      // Settled at once: a look that throws fails the acquisition before the hand-over.
      const waiting = manager('b', fs)
        .acquire(KEY, WAIT)
        .catch((error: unknown) => error as Error);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await first.release();
      const next = await waiting;
      expect(next).not.toBeInstanceOf(Error);
      if (next instanceof Error) return;
      expect(fs.failed).toHaveLength(1);
      expect(next.fencingToken).toBeGreaterThan(first.fencingToken);
      expect(await next.isStillHeld()).toBe(true);
    },
  );
});
