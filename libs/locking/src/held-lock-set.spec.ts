import { describe, expect, it } from 'vitest';
import type { HeldLock } from './held-lock';
import { HeldLockSet } from './held-lock-set';

/** A stand-in with the three members a set uses; it records what was asked of it. */
function fakeLock(name: string, log: string[], fail?: { release?: boolean; check?: boolean }) {
  const loss = new AbortController();
  const lock = {
    signal: loss.signal,
    assertStillHeld: async () => {
      log.push(`check ${name}`);
      if (fail?.check) throw new Error(`${name} lost`);
    },
    release: async () => {
      log.push(`release ${name}`);
      if (fail?.release) throw new Error(`${name} release failed`);
    },
  };
  return { lock: lock as unknown as HeldLock, loss };
}

describe('HeldLockSet', () => {
  it('releases in reverse order of taking', async () => {
    const log: string[] = [];
    const set = new HeldLockSet(['a', 'b', 'c'].map((n) => fakeLock(n, log).lock));
    await set.release();
    expect(log).toEqual(['release c', 'release b', 'release a']);
  });

  it('gives every lock back even when one release fails, then reports that failure', async () => {
    const log: string[] = [];
    const set = new HeldLockSet([fakeLock('a', log).lock, fakeLock('b', log, { release: true }).lock]);
    await expect(set.release()).rejects.toThrow('b release failed');
    expect(log.sort()).toEqual(['release a', 'release b']);
  });

  it('is lost as soon as any one lock is lost', () => {
    const log: string[] = [];
    const a = fakeLock('a', log);
    const b = fakeLock('b', log);
    const set = new HeldLockSet([a.lock, b.lock]);
    expect(set.signal.aborted).toBe(false);
    b.loss.abort(new Error('b lost'));
    expect(set.signal.aborted).toBe(true);
    expect((set.signal.reason as Error).message).toBe('b lost');
  });

  it('asserts every lock in order and stops at the first that is no longer held', async () => {
    const log: string[] = [];
    const set = new HeldLockSet([
      fakeLock('a', log).lock,
      fakeLock('b', log, { check: true }).lock,
      fakeLock('c', log).lock,
    ]);
    await expect(set.assertStillHeld()).rejects.toThrow('b lost');
    expect(log).toEqual(['check a', 'check b']);
  });
});
