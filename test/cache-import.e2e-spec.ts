import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import { describeRun, runIcc } from './support/agent-cli';
import { MEBIBYTE, exists, listDir, writeRandomFile } from './support/image-store-fixtures';
import { makeTempDir, removeDir } from './support/temp-dirs';

describe('icc cache import (the built CLI on a real cache folder)', () => {
  let root: string;
  let staging: string;
  let sha256: string;
  let store: ImageStore;
  let other: NodeLockManager;
  const IMAGE = 'first.qcow2';

  beforeEach(async () => {
    root = await makeTempDir('cli-import');
    store = new ImageStore({ root, fsync: false });
    other = new NodeLockManager({ root, conductorId: 'other-holder' });
    await store.markers.registerNode('node-a', 'cache-import');
    staging = path.join(root, '..', `${path.basename(root)}.src`);
    sha256 = await writeRandomFile(staging, 3 * MEBIBYTE + 5);
  });
  afterEach(async () => {
    await other.releaseAll();
    await removeDir(root);
    await removeDir(staging);
  });

  const icc = async (args: string[], expectedCode: number) => {
    const run = await runIcc(['cache', 'import', ...args], { env: { CACHE_ROOT: '', LOCK_STALE_MS: '' } });
    expect(run.code, describeRun(['cache', 'import', ...args], run)).toBe(expectedCode);
    return run;
  };
  const nothingPublished = async () => {
    expect(await store.copies.verifiedImage('node-a', IMAGE)).toBeUndefined();
    expect(await exists(path.join(root, 'node-a', 'images', IMAGE))).toBe(false);
    expect(await listDir(path.join(root, 'node-a', 'tmp'))).toEqual([]);
  };

  it('imports a file verified against --sha256, under the lock, with progress; again: already present', async () => {
    const run = await icc(
      ['node-a', staging, '--image-id', IMAGE, '--sha256', sha256.toUpperCase(), '--cache-root', root],
      0,
    );
    expect(run.stdout).toBe(`imported: ${IMAGE} on node-a, 3.0 MiB, sha256 ${sha256} (verified)\n`);
    expect(run.stderr).toContain('copying');
    const meta = await store.copies.verifiedImage('node-a', IMAGE, { sha256, size: 3 * MEBIBYTE + 5 });
    expect(meta).toMatchObject({ source: { via: 'file' }, fencingToken: expect.any(Number) });
    expect(await listDir(path.join(root, 'node-a', 'tmp'))).toEqual([]);
    // The lock was given back: another holder takes it at once.
    const lock = await other.acquire(
      { node: 'node-a', imageId: IMAGE, mode: 'exclusive' },
      { timeoutMs: 2_000 },
    );
    expect(lock.fencingToken).toBeGreaterThan(meta!.fencingToken!);
    await lock.release();

    const again = await icc(
      ['node-a', staging, '--image-id', IMAGE, '--sha256', sha256, '--cache-root', root, '--json'],
      0,
    );
    expect(JSON.parse(again.stdout)).toMatchObject({
      status: 'already-present',
      meta: { sha256, createdAt: meta!.createdAt },
    });
    expect(again.stderr).toBe(''); // --json: no progress lines
  });

  it('waits for the exclusive lock a copy holds, and publishes nothing when it cannot get it', async () => {
    const held = await other.acquire(
      { node: 'node-a', imageId: IMAGE, mode: 'exclusive' },
      { timeoutMs: 2_000 },
    );
    const run = await icc(
      ['node-a', staging, '--image-id', IMAGE, '--cache-root', root, '--lock-wait', '1'],
      3,
    );
    expect(run.stderr).toMatch(/import failed \(LOCK_TIMEOUT\)/);
    await nothingPublished();
    await held.release();
  });

  it('refuses a wrong --sha256 after reading the bytes: CHECKSUM_MISMATCH, nothing published', async () => {
    const wrong = 'ab'.repeat(32);
    const run = await icc(
      ['node-a', staging, '--image-id', IMAGE, '--sha256', wrong, '--cache-root', root],
      3,
    );
    expect(run.stderr).toContain(`import failed (CHECKSUM_MISMATCH)`);
    expect(run.stderr).toContain(`have sha256 ${sha256}, expected ${wrong}`);
    await nothingPublished();
  });

  it.each([
    [
      'an unknown node',
      ['node-x', '<staging>', '--image-id', IMAGE],
      /^icc cache: error: <node>: node node-x is not registered .*no marker/m,
    ],
    [
      'a node id that is not a safe name',
      ['../node-a', '<staging>', '--image-id', IMAGE],
      /^icc cache: error: <node>: /m,
    ],
    [
      'a missing file',
      ['node-a', '<missing>', '--image-id', IMAGE],
      /^icc cache: error: <file>: cannot read .*missing\.bin \(ENOENT\)/m,
    ],
    [
      'a folder as the file',
      ['node-a', '<root>', '--image-id', IMAGE],
      /^icc cache: error: <file>: .* is not a regular file/m,
    ],
    [
      'a sha256 that is not 64 hex digits',
      ['node-a', '<staging>', '--image-id', IMAGE, '--sha256', 'abc'],
      /^icc cache: error: --sha256: /m,
    ],
    [
      'an image id with a slash',
      ['node-a', '<staging>', '--image-id', 'a/b'],
      /^icc cache: error: --image-id: /m,
    ],
    ['no --image-id', ['node-a', '<staging>'], /--image-id/],
    [
      'a bad --lock-wait',
      ['node-a', '<staging>', '--image-id', IMAGE, '--lock-wait', 'soon'],
      /^icc cache: error: --lock-wait: must be/m,
    ],
  ])('refuses %s with exit 2, naming the argument; nothing is created', async (_what, args, message) => {
    const resolved = args.map((a) =>
      a === '<staging>'
        ? staging
        : a === '<missing>'
          ? path.join(root, 'missing.bin')
          : a === '<root>'
            ? root
            : a,
    );
    const before = await listDir(root);
    const run = await icc([...resolved, '--cache-root', root], 2);
    expect(run.stderr).toMatch(message);
    expect(await listDir(root)).toEqual(before);
    await nothingPublished();
  });
});
