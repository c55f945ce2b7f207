import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';
import { NodeLockManager } from './node-lock-manager';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const KEY = { node: 'src', imageId: 'img' };

/** A file system whose calls on paths matching a pattern fail with EIO once armed (a mount going away). */
class FailingCalls implements LockFileSystem {
  private readonly armed = new Map<string, RegExp>();

  fail(call: 'readdir' | 'mkdir' | 'stat', pattern: RegExp): void {
    this.armed.set(call, pattern);
  }

  private check(call: string, target: string): void {
    if (this.armed.get(call)?.test(target))
      throw Object.assign(new Error(`EIO: i/o error, ${call} '${target}'`), { code: 'EIO' });
  }

  readdir = async (dir: string) => (this.check('readdir', dir), nodeLockFileSystem.readdir(dir));
  mkdir = async (dir: string, options?: { recursive?: boolean }) => (
    this.check('mkdir', dir),
    nodeLockFileSystem.mkdir(dir, options)
  );
  stat = async (target: string) => (this.check('stat', target), nodeLockFileSystem.stat(target));
  rm = nodeLockFileSystem.rm;
  rename = nodeLockFileSystem.rename;
}

/**
 * An acquisition that fails after it started a heartbeat (a reader's entry, a gate's holder entry) must
 * leave nothing beating and nothing held: a heartbeat that goes on refreshing with no lock behind it keeps
 * its key "in use" for ever, so neither a writer nor the leftover sweep ever removes it, nor any dead
 * holder's entry beside it (docs/locking.md, "Every heartbeat belongs to a lock that is given back").
 */
describe('an acquisition that fails leaves nothing beating', () => {
  let root: string;
  let keyDir: string;
  const managers: NodeLockManager[] = [];
  const manager = (conductorId: string, fs?: LockFileSystem) => {
    const m = new NodeLockManager({ root, conductorId, timings: FAST, fs });
    managers.push(m);
    return m;
  };
  /** The key folder's entries other than the epoch, generations and their markers. */
  const entries = async () => (await fsp.readdir(keyDir)).filter((n) => n.startsWith('r~'));
  const holderEntries = async () => {
    const out: string[] = [];
    for (const name of await fsp.readdir(keyDir))
      if (/^g-\d+$/.test(name)) out.push(...(await fsp.readdir(path.join(keyDir, name))));
    return out;
  };

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-failed-'));
    keyDir = path.join(root, KEY.node, 'locks', KEY.imageId);
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });

  it("shared: the reader's check of the gate fails after its entry exists: the entry is removed", async () => {
    const fs = new FailingCalls();
    // The only stat of the gate holder's own heartbeat: the reader's re-check that the gate is still its own.
    fs.fail('stat', /\/g-\d+\/h~/);
    const reader = manager('r', fs);
    await expect(reader.acquire({ ...KEY, mode: 'shared' }, { timeoutMs: 5_000 })).rejects.toThrow(/EIO/);
    expect(await entries(), 'a reader entry beats on with no lock behind it').toEqual([]);
    expect(reader.heldLocks()).toEqual([]);
  });

  it('shared: the gate cannot be given back after the reader registered: nothing is left held', async () => {
    const fs = new FailingCalls();
    fs.fail('mkdir', /\.released$/);
    const reader = manager('r', fs);
    await expect(reader.acquire({ ...KEY, mode: 'shared' }, { timeoutMs: 5_000 })).rejects.toThrow(/EIO/);
    expect(reader.heldLocks(), 'a reader lock is held that no caller can release').toEqual([]);
    expect(await entries(), 'a reader entry beats on with no lock behind it').toEqual([]);
  });

  it("exclusive: the claim's re-check fails after its holder entry exists: the entry is removed", async () => {
    const fs = new FailingCalls();
    await fsp.mkdir(keyDir, { recursive: true });
    const claimant = manager('c', fs);
    // Listings of the key folder work until a generation exists; the re-check after the mkdir then fails.
    const readdir = fs.readdir;
    fs.readdir = async (dir: string) => {
      if (dir === keyDir && (await fsp.readdir(keyDir)).some((n) => /^g-\d+$/.test(n)))
        throw Object.assign(new Error(`EIO: i/o error, readdir '${dir}'`), { code: 'EIO' });
      return readdir(dir);
    };
    await expect(claimant.acquire({ ...KEY, mode: 'exclusive' }, { timeoutMs: 5_000 })).rejects.toThrow(
      /EIO/,
    );
    expect(await holderEntries(), 'a gate holder entry beats on with no lock behind it').toEqual([]);
    // The key is free for others at once... or after the stale time: the abandoned generation is bare.
    const other = await manager('o').acquire({ ...KEY, mode: 'exclusive' }, { timeoutMs: 3 * FAST.staleMs });
    expect(await other.isStillHeld()).toBe(true);
  });
});
