import { execFileSync } from 'node:child_process';
import { promises as fsp, openSync, closeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Heartbeat } from './heartbeat';
import { resolveLockTimings } from './lock-timings';
import { libuvPoolSize } from './poll-budget';

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 10));
}

/**
 * A heartbeat that went quiet says where its time went, so an operator can tell a file system that did
 * not answer (a stalled mount, a capability recall) from a process that ran its timers late: CephFS
 * campaigns lost locks "no heartbeat for 3.8 s" and nothing told which it was.
 */
describe('a heartbeat gone quiet', () => {
  let dir = '';
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('names the refresh call the file system has not answered, and how long the last ones took', async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-beat-'));
    cleanups.push(() => fsp.rm(dir, { recursive: true, force: true }));
    const timings = resolveLockTimings({ staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500 });
    const lost: Error[] = [];
    const heartbeat = new Heartbeat(path.join(dir, 'beat'), timings, (reason) => lost.push(reason));
    await heartbeat.start();
    cleanups.push(() => heartbeat.stop());
    // One whole refresh (stat, then utimes) answered.
    await until(() => heartbeat.describeRefresh().includes('utimes'));
    expect(heartbeat.describeRefresh()).toMatch(
      /^no refresh call under way; the last answered: stat \d+ ms, utimes \d+ ms$/,
    );

    // A stalled file system: every thread of the pool waits in open(2) of a FIFO nobody writes to.
    const fifos = Array.from({ length: libuvPoolSize() }, (_, i) => path.join(dir, `fifo-${i}`));
    for (const fifo of fifos) execFileSync('mkfifo', [fifo]);
    const stalled = fifos.map((fifo) => fsp.open(fifo, 'r'));
    cleanups.push(async () => {
      // Opening the write ends answers the blocked opens (O_NONBLOCK: a reader is waiting, so it succeeds).
      for (const fifo of fifos) closeSync(openSync(fifo, 'w'));
      for (const handle of await Promise.all(stalled)) await handle.close();
    });

    await until(() => heartbeat.describeRefresh().startsWith('its stat unanswered'));
    await new Promise((r) => setTimeout(r, 1_600)); // past the 1.5 s trust window
    heartbeat.checkContinuity();
    expect(lost.map((e) => e.message)).toEqual([
      expect.stringMatching(
        /^no heartbeat for \d+ ms \(its stat unanswered for \d+ ms; the last answered: stat \d+ ms, utimes \d+ ms\)$/,
      ),
    ]);
    expect(heartbeat.isFresh()).toBe(false);
  });
});
