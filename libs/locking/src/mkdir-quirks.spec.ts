import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';
import { tempManagers } from './temp-managers.fixture';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const WAIT = { timeoutMs: 5 * FAST.staleMs };
const KEY = { node: 'n1', imageId: 'img', mode: 'exclusive' as const };

/**
 * GlusterFS's answers, one at a time: the next `times` mkdirs of a matching path fail with `code` and
 * create nothing. EEXIST so is a mkdir that two clients raced on two bricks and both rolled back; ENOENT a
 * recursive mkdir whose parent another brick did not show yet.
 */
class QuirkyMkdir implements LockFileSystem {
  readonly failed: string[] = [];
  private quirk?: { match: RegExp; code: 'EEXIST' | 'ENOENT'; times: number };

  next(match: RegExp, code: 'EEXIST' | 'ENOENT', times = 1): void {
    this.quirk = { match, code, times };
  }

  async mkdir(dir: string, options?: { recursive?: boolean }) {
    const quirk = this.quirk;
    if (quirk && quirk.times > 0 && quirk.match.test(dir)) {
      quirk.times--;
      this.failed.push(`${quirk.code} ${path.basename(dir)}`);
      throw Object.assign(new Error(`${quirk.code}: mkdir '${dir}'`), { code: quirk.code });
    }
    return nodeLockFileSystem.mkdir(dir, options);
  }

  readdir = nodeLockFileSystem.readdir;
  stat = nodeLockFileSystem.stat;
  rm = nodeLockFileSystem.rm;
  rename = nodeLockFileSystem.rename;
}

describe('GlusterFS mkdir quirks, through the lock manager file-system seam', () => {
  const bed = tempManagers('icc-quirks-', FAST);
  const manager = bed.manager;

  it('a claim mkdir that fails EEXIST with nothing there is neither a win nor a loss: the claim is tried again', async () => {
    const fs = new QuirkyMkdir();
    fs.next(/\/g-\d+$/, 'EEXIST', 3);
    const lock = await manager('a', fs).acquire(KEY, WAIT);
    expect(fs.failed).toEqual([expect.stringMatching(/^EEXIST g-/), expect.anything(), expect.anything()]);
    // The same name every contender computes (the floor): no generation was skipped or invented.
    expect(`EEXIST g-${lock.fencingToken}`).toBe(fs.failed[0]);
    expect(await lock.isStillHeld()).toBe(true);
    await lock.release();
  });

  it('an epoch mkdir that fails EEXIST with nothing there is tried again', async () => {
    const fs = new QuirkyMkdir();
    fs.next(/\/epoch$/, 'EEXIST', 2);
    const lock = await manager('a', fs).acquire(KEY, WAIT);
    expect(fs.failed).toEqual(['EEXIST epoch', 'EEXIST epoch']);
    expect(await lock.isStillHeld()).toBe(true);
  });

  it('a recursive mkdir of the key folder that fails ENOENT is tried again', async () => {
    const fs = new QuirkyMkdir();
    fs.next(/\/locks\/img$/, 'ENOENT');
    const lock = await manager('a', fs).acquire(KEY, WAIT);
    expect(fs.failed).toEqual(['ENOENT img']);
    expect(await lock.isStillHeld()).toBe(true);
  });

  it.each([
    ['EEXIST', 'locks'],
    ['ENOENT', 'locks'],
    ['ENOENT', 'img'],
  ] as const)(
    'requireNodeFolder: %s from the mkdir of %s under an existing node folder is tried again, not a lost lock',
    async (code, folder) => {
      await fsp.mkdir(path.join(bed.root, 'n1'));
      const fs = new QuirkyMkdir();
      fs.next(new RegExp(`/n1/${folder === 'locks' ? 'locks' : 'locks/img'}$`), code);
      const lock = await manager('a', fs, true).acquire(KEY, WAIT);
      expect(fs.failed).toEqual([`${code} ${folder}`]);
      expect(await lock.isStillHeld()).toBe(true);
    },
  );

  it('a release marker whose mkdir fails EEXIST with nothing there is made again: the next holder need not wait out the stale time', async () => {
    const fs = new QuirkyMkdir();
    const first = await manager('a', fs).acquire(KEY, WAIT);
    fs.next(/\.released$/, 'EEXIST');
    await first.release();
    expect(fs.failed).toEqual([`EEXIST g-${first.fencingToken}.released`]);
    const next = await manager('b').acquire(KEY, WAIT);
    expect(next.tookOverStale).toBe(false);
    expect(next.fencingToken).toBe(first.fencingToken + 1);
  });
});
