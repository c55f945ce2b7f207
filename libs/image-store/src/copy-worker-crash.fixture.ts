/*
 * A copy worker that dies in the middle of its first copy (specs only, started by CopyWorkerPool as its
 * script): while the file named by ICC_COPY_WORKER_CRASH_MARKER exists, the third write of a copy throws
 * an uncaught error in the thread instead of writing. The marker is removed by the crash, so the worker
 * that replaces it copies normally.
 */
/* eslint-disable @typescript-eslint/no-require-imports -- the patch must be in place before the worker's code loads */
const fs = require('node:fs') as typeof import('node:fs');

const marker = process.env.ICC_COPY_WORKER_CRASH_MARKER;
const realWrite = fs.write;
let writes = 0;
Object.assign(fs, {
  write: (...args: unknown[]) => {
    writes += 1;
    if (writes === 3 && marker !== undefined && fs.existsSync(marker)) {
      fs.rmSync(marker);
      setImmediate(() => {
        throw new Error('copy worker crashed on purpose (spec)');
      });
      return;
    }
    return (realWrite as (...a: unknown[]) => void)(...args);
  },
});
require('./copy-worker-thread');
