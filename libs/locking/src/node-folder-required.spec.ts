import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NodeLockManager } from './node-lock-manager';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };

/*
 * A dead network mount leaves an empty local mount point where CACHE_ROOT was: a lock manager that made
 * `<node>/locks/<imageId>` there would hold a lock no other host sees (two holders, found by the
 * across-hosts campaign). With requireNodeFolder it refuses, retryably, and creates nothing.
 */
describe('NodeLockManager with requireNodeFolder', () => {
  let root: string;
  let manager: NodeLockManager;
  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-lock-node-'));
    manager = new NodeLockManager({ root, conductorId: 'c1', timings: FAST, requireNodeFolder: true });
  });
  afterEach(async () => {
    await manager.releaseAll();
    await fsp.rm(root, { recursive: true, force: true });
  });

  it.each(['exclusive', 'shared'] as const)(
    'refuses a %s lock of a node without a folder, retryably, and creates nothing',
    async (mode) => {
      const failure = await manager.acquire({ node: 'n1', imageId: 'img', mode }, { timeoutMs: 1_000 }).then(
        () => undefined,
        (error: Error & { code?: string; retryable?: boolean }) => error,
      );
      expect(failure?.code).toBe('LOCK_LOST');
      expect(failure?.retryable).toBe(true);
      expect(failure?.message).toMatch(/node folder .*n1 does not exist/);
      expect(await fsp.readdir(root)).toEqual([]);
    },
  );

  it('locks a key of an existing node folder, making its locks folder', async () => {
    await fsp.mkdir(path.join(root, 'n1'));
    const lock = await manager.acquire(
      { node: 'n1', imageId: 'img', mode: 'exclusive' },
      { timeoutMs: 1_000 },
    );
    expect(await fsp.readdir(path.join(root, 'n1', 'locks', 'img'))).toContain(`g-${lock.fencingToken}`);
    await lock.release();
  });
});
