import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CONDUCTOR_THREAD_POOL_SIZE } from '../apps/conductor/src/thread-pool';
import { waitFor } from './support/async';
import { compiled } from './support/child-processes';
import { makeTempDir, removeDir } from './support/temp-dirs';

/** More file calls at once than libuv's default pool (4) runs, or the conductor's before 1.1.0 (16). */
const CALLS = 40;

/** Threads of `pid` blocked in opening a FIFO that has no writer yet (each holds one pool thread). */
async function threadsWaitingOnFifos(pid: number): Promise<number> {
  const tasks = await fsp.readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  let waiting = 0;
  for (const task of tasks) {
    const wchan = await fsp.readFile(`/proc/${pid}/task/${task}/wchan`, 'utf8').catch(() => '');
    if (wchan.trim() === 'wait_for_partner') waiting++;
  }
  return waiting;
}

/**
 * The conductor's libuv pool (apps/conductor/src/thread-pool.ts): each open() of a FIFO without a writer
 * holds a pool thread, like a file call into a slow mount. With the pool's default of 4 threads only 4 of
 * 40 such calls run at once and a heartbeat would queue behind the rest; the conductor's main module
 * sizes the pool before anything uses it, so all 40 run. An operator's UV_THREADPOOL_SIZE is kept.
 */
describe("the conductor's file-system thread pool", () => {
  let dir: string | undefined;
  let child: ChildProcess | undefined;
  afterEach(async () => {
    child?.kill('SIGKILL');
    child = undefined;
    if (dir) await removeDir(dir);
    dir = undefined;
  });

  async function callsRunningAtOnce(env: NodeJS.ProcessEnv, expected: number): Promise<number> {
    dir = await makeTempDir('thread-pool');
    const fifos = Array.from({ length: CALLS }, (_, i) => path.join(dir!, `fifo-${i}`));
    for (const fifo of fifos) execFileSync('mkfifo', [fifo]);
    // main.ts's first import, as the conductor loads it; then the calls.
    const script = `
      require(${JSON.stringify(compiled('apps/conductor/src/thread-pool.ts'))});
      const fs = require('node:fs');
      for (const fifo of ${JSON.stringify(fifos)}) fs.open(fifo, 'r', () => {});
      setInterval(() => {}, 1000);
    `;
    child = spawn(process.execPath, ['-e', script], { env, stdio: 'ignore' });
    // Waits until as many calls run as expected; fewer (a smaller pool) are what is left when it gives up.
    let seen = 0;
    await waitFor(
      async () => (seen = await threadsWaitingOnFifos(child!.pid!)) >= expected,
      `${expected} calls blocked at once`,
      // Only a failing run waits this long; a loaded machine took over 5 s to start 40 threads once.
      20_000,
    ).catch(() => undefined);
    return seen;
  }

  it('runs more file calls at once than the default pool of 4', async () => {
    expect(CONDUCTOR_THREAD_POOL_SIZE).toBeGreaterThanOrEqual(CALLS);
    const { UV_THREADPOOL_SIZE: _unset, ...env } = process.env;
    expect(await callsRunningAtOnce(env, CALLS)).toBe(CALLS);
  });

  it("keeps an operator's UV_THREADPOOL_SIZE", async () => {
    expect(await callsRunningAtOnce({ ...process.env, UV_THREADPOOL_SIZE: '6' }, 6)).toBe(6);
  });
});
