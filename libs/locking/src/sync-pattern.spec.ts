import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';
import { NodeLockManager } from './node-lock-manager';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const KEY = { node: 'n1', imageId: 'img', mode: 'exclusive' as const };

/** Node's file system, recording the calls that change the key folder and every fsync, in order. */
function recording(root: string): { fs: LockFileSystem; log: string[] } {
  const log: string[] = [];
  const rel = (p: string) => path.relative(path.join(root, 'n1', 'locks', 'img'), p) || '.';
  const name = (p: string) => rel(p).replace(/g-\d+/g, 'g-N');
  return {
    log,
    fs: {
      ...nodeLockFileSystem,
      mkdir: async (dir, options) => {
        const made = await nodeLockFileSystem.mkdir(dir, options);
        if (!options?.recursive) log.push(`mkdir ${name(dir)}`);
        return made;
      },
      rmdir: async (target) => {
        await nodeLockFileSystem.rmdir!(target);
        log.push(`rmdir ${name(target)}`);
      },
      rm: async (target, options) => {
        await nodeLockFileSystem.rm(target, options);
        log.push(`rm ${name(target)}`);
      },
      openFolder: async (dir) => {
        const folder = await nodeLockFileSystem.openFolder!(dir);
        log.push(`open ${name(dir)}`);
        return {
          sync: async () => {
            await folder.sync();
            log.push(`fsync ${name(dir)}`);
          },
          close: () => folder.close(),
        };
      },
    },
  };
}

/*
 * The file-system pattern that keeps a hand-off quick on CephFS (lock-file-system.ts, syncFolder): a claim
 * ends in an fsync of the entry it made; a release fsyncs the key folder after its marker and after each
 * removal, through the folder opened before them (no path lookup after a removal). On by syncSteps here:
 * a local folder alone would not be fsynced (step-file-system.spec.ts).
 */
describe('the lock protocol fsyncs each step of a claim and a release', () => {
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-lock-sync-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('a claim fsyncs its heartbeat entry; a release fsyncs the key folder after each step', async () => {
    const { fs, log } = recording(root);
    const manager = new NodeLockManager({ root, conductorId: 'c1', timings: FAST, fs, syncSteps: true });
    await (await manager.acquire(KEY, { timeoutMs: 1_000 })).release(); // first use: g-N and the epoch
    log.splice(0);
    const lock = await manager.acquire(KEY, { timeoutMs: 1_000 });
    const claim = log.splice(0);
    expect(claim).toEqual([
      'mkdir g-N',
      'open g-N/h~c1~' + lock.holder.attemptId,
      expect.stringMatching(/^fsync g-N\/h~c1~/),
    ]);
    await lock.release();
    // The key folder opened first; the marker, fsynced; then each generation below, removed and fsynced.
    expect(log).toEqual([
      'open .',
      'mkdir g-N.released',
      'fsync .',
      expect.stringMatching(/^rmdir g-N(\.released)?$/),
      'fsync .',
      expect.stringMatching(/^rmdir g-N(\.released)?$/),
      'fsync .',
    ]);
    const left = await fsp.readdir(path.join(root, 'n1', 'locks', 'img'));
    expect(left.sort()).toEqual(['epoch', `g-${lock.fencingToken}`, `g-${lock.fencingToken}.released`]);
  });

  it('a holder whose heartbeat is no longer trusted leaves the garbage to the next one', async () => {
    const { fs } = recording(root);
    const manager = new NodeLockManager({ root, conductorId: 'c1', timings: FAST, fs, syncSteps: true });
    const first = await manager.acquire(KEY, { timeoutMs: 1_000 });
    await first.release();
    const second = await manager.acquire(KEY, { timeoutMs: 1_000 });
    second.signal.addEventListener('abort', () => undefined);
    // Stands in for a pause longer than the trust window: the heartbeat is given up before the release.
    (second as unknown as { lose(reason: unknown): void }).lose(new Error('paused'));
    await second.release();
    const left = await fsp.readdir(path.join(root, 'n1', 'locks', 'img'));
    expect(left).toEqual(
      expect.arrayContaining([`g-${first.fencingToken}`, `g-${first.fencingToken}.released`]),
    );
  });
});

/** Node's file system, recording every step under `root` (paths relative to it) and every fsync, in order. */
function recordingAll(root: string): { fs: LockFileSystem; log: string[] } {
  const log: string[] = [];
  const name = (p: string) =>
    (path.relative(root, p) || '.').replace(/g-\d+/g, 'g-N').replace(/~[0-9a-f]{16}/g, '~A');
  return {
    log,
    fs: {
      ...nodeLockFileSystem,
      mkdir: async (dir, options) => {
        const made = await nodeLockFileSystem.mkdir(dir, options);
        log.push(`mkdir${options?.recursive ? ' -p' : ''} ${name(dir)}`);
        return made;
      },
      rmdir: async (target) => {
        await nodeLockFileSystem.rmdir!(target);
        log.push(`rmdir ${name(target)}`);
      },
      rm: async (target, options) => {
        await nodeLockFileSystem.rm(target, options);
        log.push(`rm -r ${name(target)}`);
      },
      rename: async (from, to) => {
        await nodeLockFileSystem.rename(from, to);
        log.push(`rename ${name(from)} ${name(to)}`);
      },
      openFolder: async (dir) => {
        const folder = await nodeLockFileSystem.openFolder!(dir);
        return {
          sync: async () => {
            await folder.sync();
            log.push(`fsync ${name(dir)}`);
          },
          close: () => folder.close(),
        };
      },
    },
  };
}

/*
 * The steps around the gate that other clients look up by path: a new key folder, and a retirement (the
 * rename of the key folder away, then its rm -r). On CephFS each left unjournaled held up every look up of
 * the key (or of any key in `locks/`) until the MDS's 5 s tick.
 */
describe('the lock protocol fsyncs a new key folder and each step of a retirement', () => {
  let root: string;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-lock-sync-'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('a first use fsyncs the key folder and the epoch it made, through the folder they are in', async () => {
    const { fs, log } = recordingAll(root);
    const manager = new NodeLockManager({ root, conductorId: 'c1', timings: FAST, fs, syncSteps: true });
    // The node's first key: locks/ is made too, so the key folder is fsynced by path.
    await (await manager.acquire(KEY, { timeoutMs: 1_000 })).release();
    expect(log.slice(0, 4)).toEqual([
      'mkdir -p n1/locks/img',
      'fsync n1/locks/img',
      'mkdir n1/locks/img/epoch',
      'fsync n1/locks/img',
    ]);
    // A key folder that exists is neither made nor fsynced again.
    log.splice(0);
    await (await manager.acquire(KEY, { timeoutMs: 1_000 })).release();
    expect(log.filter((line) => line.startsWith('mkdir -p'))).toEqual([]);
    expect(log[0]).toBe('mkdir n1/locks/img/g-N');
    // A new key under an existing locks/: made, then fsynced through locks/, opened before the mkdir.
    log.splice(0);
    await (await manager.acquire({ ...KEY, imageId: 'img2' }, { timeoutMs: 1_000 })).release();
    expect(log.slice(0, 4)).toEqual([
      'mkdir -p n1/locks/img2',
      'fsync n1/locks',
      'mkdir n1/locks/img2/epoch',
      'fsync n1/locks/img2',
    ]);
  });

  it('a retirement fsyncs locks/ after the rename, and removes the folder one fsynced step at a time', async () => {
    const { fs, log } = recordingAll(root);
    const manager = new NodeLockManager({ root, conductorId: 'c1', timings: FAST, fs, syncSteps: true });
    await (await manager.acquire(KEY, { timeoutMs: 1_000 })).release();
    log.splice(0);
    expect(await manager.retireKey(KEY, { timeoutMs: 1_000, floorMarginUs: 0 })).toBe('retired');
    const from = log.findIndex((line) => line.startsWith('rename n1/locks/img '));
    expect(from).toBeGreaterThanOrEqual(0);
    const away = log[from]!.split(' ')[2]!;
    expect(away).toMatch(/^n1\/locks\/~retired~img~/);
    expect(log[from + 1]).toBe('fsync n1/locks');
    // Every removal inside the retired folder is followed by an fsync of the folder it was in; the
    // retired folder's own removal by one of locks/; no rm -r of many entries at once.
    const removal = log.slice(from + 2);
    expect(removal.filter((line) => line.startsWith('rm -r'))).toEqual([]);
    removal.forEach((line, i) => {
      if (!line.startsWith('rmdir ')) return;
      const target = line.slice('rmdir '.length);
      expect(removal[i + 1], `after ${line}`).toBe(`fsync ${path.dirname(target)}`);
    });
    expect(removal.at(-2)).toBe(`rmdir ${away}`);
    expect(removal.at(-1)).toBe('fsync n1/locks');
    expect(removal.filter((line) => line.startsWith('rmdir ')).length).toBeGreaterThanOrEqual(3);
    expect(await fsp.readdir(path.join(root, 'n1', 'locks'))).toEqual([]);
  });
});
