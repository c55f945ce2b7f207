import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from './support/async';
import { compiled } from './support/child-processes';
import { makeTempDir, removeDir } from './support/temp-dirs';

const POOL_THREADS = 4;

/**
 * A conductor whose file calls hang (a network mount that stopped answering) must still log. Every thread
 * of libuv's pool is held here by an open() of a FIFO that has no writer: it never returns until the test
 * opens the other end, exactly like a call into a dead mount. A logger that writes through the pool would
 * print nothing until then.
 */
describe('the conductor log while every file-system thread hangs', () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await removeDir(dir);
    dir = undefined;
  });

  it('still reaches stdout', async () => {
    dir = await makeTempDir('log-hung-fs');
    const fifos = Array.from({ length: POOL_THREADS }, (_, i) => path.join(dir!, `fifo-${i}`));
    for (const fifo of fifos) execFileSync('mkfifo', [fifo]);
    const script = `
      const fs = require('node:fs');
      const { createRootLogger } = require(${JSON.stringify(compiled('apps/conductor/src/logging/root-logger.ts'))});
      const log = createRootLogger('info', { conductorId: 'hung', cell: 'c' });
      for (const fifo of ${JSON.stringify(fifos)}) fs.open(fifo, 'r', () => {});
      setTimeout(() => log.info('logged while the file system hangs'), 100);
    `;
    const child = spawn(process.execPath, ['-e', script], {
      env: { ...process.env, UV_THREADPOOL_SIZE: String(POOL_THREADS) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      await until(
        async () => stdout.includes('logged while the file system hangs'),
        `the log line while the pool is held (stderr: ${stderr})`,
        10_000,
      );
      expect(JSON.parse(stdout.trim().split('\n')[0]!)).toMatchObject({ conductorId: 'hung', cell: 'c' });
    } finally {
      // Release the pool: each blocked open() returns once its FIFO has a writer.
      await Promise.all(fifos.map(async (fifo) => (await fsp.open(fifo, 'w')).close()));
      child.kill('SIGKILL');
      await exited;
    }
  });
});
