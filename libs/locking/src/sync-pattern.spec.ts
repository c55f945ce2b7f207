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
