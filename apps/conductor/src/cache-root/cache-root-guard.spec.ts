import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { promisify } from 'node:util';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HEADER_KEY_FILE, loadOrCreateHeaderKey } from './header-key';
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

  it('checkAfterNow reads after the call: a read already under way (begun on a dead mount) is not its answer', async () => {
    const key = await loadOrCreateHeaderKey(root);
    const reads: Array<(text: string) => void> = [];
    const guard = new CacheRootGuard({
      cacheRoot: root,
      expectedKey: key,
      log: recordingLogger(),
      readKey: () => new Promise((resolve) => reads.push(resolve)),
    });
    const early = guard.check(); // under way when the mount comes back
    const after = guard.checkAfterNow();
    reads[0]!('0'.repeat(64)); // the early read saw another key (what the dead mount showed)
    expect(await early).toMatchObject({ available: false });
    await waitFor(() => reads.length === 2, 'the second read');
    reads[1]!(key.toString('hex'));
    expect(await after).toEqual({ available: true });
  });

  it('notices the way back by itself, without a caller checking', async () => {
    const log = recordingLogger();
    const guard = new CacheRootGuard({
      cacheRoot: root,
      expectedKey: await loadOrCreateHeaderKey(root),
      log,
      probeMs: 20,
    });
    guard.start();
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

  describe('a mount whose calls never return', () => {
    afterEach(() => vi.useRealTimers());

    /**
     * A guard on the fake clock whose witness reads answer at once until `stall()`, then only after
     * `stallMs` (Infinity: never, as on a FUSE mount whose server never answers).
     */
    async function onFakeClock(afterMs: number, stallMs = Infinity) {
      const key = await loadOrCreateHeaderKey(root);
      vi.useFakeTimers();
      let stalled = false;
      const exits: string[] = [];
      const log = recordingLogger();
      const text = key.toString('hex');
      const guard = new CacheRootGuard({
        cacheRoot: root,
        expectedKey: key,
        log,
        timeoutMs: 2_000,
        probeMs: 1_000,
        hangExit: { afterMs, exit: (message) => exits.push(message) },
        readKey: () =>
          !stalled
            ? Promise.resolve(text)
            : new Promise<string>((resolve) => {
                if (stallMs !== Infinity) setTimeout(() => resolve(text), stallMs);
              }),
        now: () => Date.now(),
      });
      guard.start();
      return { guard, log, exits, stall: () => (stalled = true) };
    }

    it('leaves once a read has had no answer for the bound, while nothing else reads the folder', async () => {
      const { guard, log, exits, stall } = await onFakeClock(12_000);
      await vi.advanceTimersByTimeAsync(5_000);
      expect(exits).toEqual([]);
      stall();
      // The next probe's read never answers: unavailable after its 2 s timeout, and no second read is issued.
      await vi.advanceTimersByTimeAsync(11_000);
      expect(exits).toEqual([]);
      await vi.advanceTimersByTimeAsync(2_000);
      expect(exits).toHaveLength(1);
      expect(exits[0]).toMatch(
        /CACHE_ROOT hangs: a read of .*\.icc-header-key has had no answer for 12000 ms/,
      );
      expect(log.entries.filter((e) => e.level === 'error')).toEqual([
        expect.objectContaining({
          obj: expect.objectContaining({ file: path.join(root, HEADER_KEY_FILE), unansweredMs: 12_000 }),
        }),
      ]);
      // Once only, however long the process takes to go.
      await vi.advanceTimersByTimeAsync(10_000);
      expect(exits).toHaveLength(1);
      guard.stop();
    });

    it('waits out reads slower than the timeout but shorter than the bound', async () => {
      const { guard, exits, stall } = await onFakeClock(12_000, 9_000);
      stall();
      await vi.advanceTimersByTimeAsync(3_500);
      expect(await guard.check()).toMatchObject({ available: false });
      await vi.advanceTimersByTimeAsync(60_000);
      expect(exits).toEqual([]);
      guard.stop();
    });

    it('does not count time the process was frozen (SIGSTOP, a VM pause) as the file system not answering', async () => {
      const key = await loadOrCreateHeaderKey(root);
      vi.useFakeTimers();
      const exits: string[] = [];
      const guard = new CacheRootGuard({
        cacheRoot: root,
        expectedKey: key,
        log: recordingLogger(),
        probeMs: 1_000,
        timeoutMs: 60_000,
        hangExit: { afterMs: 12_000, exit: (message) => exits.push(message) },
        readKey: () => new Promise<string>(() => undefined),
        now: () => Date.now(),
      });
      guard.start();
      await vi.advanceTimersByTimeAsync(1_000); // the first probe's read is under way
      // Frozen for 30 s (SIGSTOP, a VM pause): the clock moves, no timer runs. On waking the probe timer
      // runs before the read's answer (which may have been there all along) is seen: not a hang yet.
      vi.setSystemTime(Date.now() + 30_000);
      await vi.advanceTimersByTimeAsync(1_000);
      expect(exits).toEqual([]);
      // Still no answer while awake: the bound counts on from there.
      await vi.advanceTimersByTimeAsync(9_000);
      expect(exits).toEqual([]);
      await vi.advanceTimersByTimeAsync(1_000);
      expect(exits).toHaveLength(1);
      guard.stop();
    });

    it('never leaves with the bound 0', async () => {
      const { guard, exits, stall } = await onFakeClock(0);
      stall();
      await vi.advanceTimersByTimeAsync(600_000);
      expect(exits).toEqual([]);
      guard.stop();
    });
  });
});
