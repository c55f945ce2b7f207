import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HEADER_KEY_FILE, loadOrCreateHeaderKey } from '../requests/header-key';
import { waitFor } from '../../../../test/support/async';
import { CacheRootGuard } from './cache-root-guard';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import { recordingLogger } from '../../../../test/support/recording-logger';

describe('CacheRootGuard', () => {
  let dir: string;
  let root: string;
  beforeEach(async () => {
    dir = await makeTempDir('guard');
    root = path.join(dir, 'cache');
    await fsp.mkdir(root);
  });
  afterEach(() => removeDir(dir));

  async function started() {
    const log = recordingLogger();
    const guard = new CacheRootGuard({
      cacheRoot: root,
      expectedKey: await loadOrCreateHeaderKey(root),
      log,
    });
    return { guard, log };
  }

  it("is available on the folder it started on; a dead mount's empty folder is not; back by itself", async () => {
    const { guard, log } = await started();
    expect(await guard.check()).toEqual({ available: true });
    // What a dead sshfs mount leaves: the cell's folder gone from under the path, an empty one there.
    await fsp.rename(root, path.join(dir, 'away'));
    await fsp.mkdir(root);
    const lost = await guard.check();
    expect(lost).toMatchObject({ available: false, problem: expect.stringContaining('is gone') });
    expect(await guard.check()).toMatchObject({ available: false });
    // The mount made again.
    await fsp.rmdir(root);
    await fsp.rename(path.join(dir, 'away'), root);
    expect(await guard.check()).toEqual({ available: true });
    // Logged once each way.
    expect(log.entries.map((e) => [e.level, e.msg.split(':')[0]])).toEqual([
      ['warn', 'CACHE_ROOT unavailable'],
      ['info', 'CACHE_ROOT available again'],
    ]);
  });

  it('notices the way back by itself, without a caller checking', async () => {
    const log = recordingLogger();
    const guard = new CacheRootGuard({
      cacheRoot: root,
      expectedKey: await loadOrCreateHeaderKey(root),
      log,
      recheckMs: 20,
    });
    await fsp.rename(path.join(root, HEADER_KEY_FILE), path.join(dir, 'key'));
    expect(await guard.check()).toMatchObject({ available: false });
    await fsp.rename(path.join(dir, 'key'), path.join(root, HEADER_KEY_FILE));
    try {
      await waitFor(
        () => log.entries.some((e) => e.msg === 'CACHE_ROOT available again'),
        'the recovery logged',
        5_000,
      );
    } finally {
      guard.stop();
    }
  });

  it('a hung read is never joined by another: one file-system thread at most waits on a hung mount', async () => {
    const key = await loadOrCreateHeaderKey(root);
    const guard = new CacheRootGuard({
      cacheRoot: root,
      expectedKey: key,
      log: recordingLogger(),
      timeoutMs: 50,
    });
    // A FIFO with no writer: reading it waits, as a read does on a FUSE mount whose server never answers.
    const file = path.join(root, HEADER_KEY_FILE);
    await fsp.rm(file);
    await promisify(execFile)('mkfifo', [file]);
    try {
      expect(await guard.check()).toMatchObject({
        available: false,
        problem: expect.stringContaining('no answer'),
      });
      expect(await guard.check()).toMatchObject({
        available: false,
        problem: expect.stringContaining('an earlier read has had no answer'),
      });
    } finally {
      // Answers the hung read (opening the writer end lets it go on), then the regular file again.
      const writer = await fsp.open(file, 'w');
      await writer.writeFile(`${key.toString('hex')}\n`);
      await writer.close();
      guard.stop();
    }
    await fsp.rm(file);
    await fsp.writeFile(file, `${key.toString('hex')}\n`);
    await waitFor(async () => (await guard.check()).available, 'available once the hung read ended', 5_000);
    guard.stop();
  });

  it("another cell's folder mounted at the path is not this cell's", async () => {
    const { guard } = await started();
    await fsp.rename(root, path.join(dir, 'away'));
    await fsp.mkdir(root);
    await loadOrCreateHeaderKey(root);
    expect(await guard.check()).toMatchObject({
      available: false,
      problem: expect.stringContaining('another key'),
    });
  });
});
