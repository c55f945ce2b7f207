import type { Logger } from '@app/contracts';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { HEADER_KEY_FILE } from '../requests/header-key';

export type CacheRootState = { available: true } | { available: false; problem: string };

export interface CacheRootGuardOptions {
  cacheRoot: string;
  /** The cell's header key as this conductor read it at start (loadOrCreateHeaderKey). */
  expectedKey: Buffer;
  log: Pick<Logger, 'info' | 'warn'>;
  /** A read slower than this counts as unavailable (a hung network mount). */
  timeoutMs?: number;
  /** While unavailable, checked again this often, so the way back is noticed (and logged) by itself. */
  recheckMs?: number;
}

/**
 * Tells whether CACHE_ROOT is still the cell's folder this conductor started on. A network mount that
 * died leaves an empty local folder (or one that fails ENOTCONN, or hangs) at the same path: there, every
 * node and image looks absent, and a final UNKNOWN_NODE or SOURCE_MISSING would be a lie. The witness is
 * the cell's header key file, compared by content: it is in every cell's CACHE_ROOT from the first
 * conductor's start on, and inode or device numbers change when a FUSE mount is made again. Logs the
 * change of state once each way; while unavailable it checks again by itself until the mount is back.
 */
export class CacheRootGuard {
  private lastProblem?: string;
  private probe?: Promise<CacheRootState>;
  private recheck?: NodeJS.Timeout;
  /** A read that outlived its timeout: it holds a file-system thread until the mount answers. */
  private stuck?: Promise<unknown>;

  constructor(private readonly options: CacheRootGuardOptions) {}

  /** One read at a time; concurrent callers share it. */
  check(): Promise<CacheRootState> {
    this.probe ??= this.read().finally(() => {
      this.probe = undefined;
    });
    return this.probe;
  }

  private async read(): Promise<CacheRootState> {
    const file = path.join(this.options.cacheRoot, HEADER_KEY_FILE);
    const timeoutMs = this.options.timeoutMs ?? 2_000;
    if (this.stuck) {
      // Never a second read behind a hung one: each would hold another of Node's few file-system threads.
      const problem = `${file}: an earlier read has had no answer from the file system for over ${timeoutMs} ms`;
      this.logTransition(problem);
      return { available: false, problem };
    }
    const reading = fsp.readFile(file, 'utf8');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    let problem: string | undefined;
    try {
      const text = await Promise.race([reading, timeout]);
      if (text === 'timeout') {
        const stuck = reading.then(
          () => undefined,
          () => undefined,
        );
        this.stuck = stuck.finally(() => {
          this.stuck = undefined;
        });
        problem = `${file}: no answer from the file system within ${timeoutMs} ms`;
      } else if (!this.options.expectedKey.equals(Buffer.from(text.trim(), 'hex')))
        problem = `${file}: holds another key than at start (another folder is mounted there, or the key was replaced)`;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      problem =
        code === 'ENOENT'
          ? `${file} is gone: CACHE_ROOT is not the cell's folder any more (a network mount that died?)`
          : `${file}: ${error instanceof Error ? error.message : String(error)}`;
    } finally {
      clearTimeout(timer);
    }
    this.logTransition(problem);
    return problem === undefined ? { available: true } : { available: false, problem };
  }

  private logTransition(problem: string | undefined): void {
    if ((problem === undefined) === (this.lastProblem === undefined)) return;
    const was = this.lastProblem;
    this.lastProblem = problem;
    if (problem !== undefined) {
      // unref: a guard waiting for a mount never keeps the process alive; check() never rejects.
      this.recheck = setInterval(() => void this.check(), this.options.recheckMs ?? 1_000).unref();
      this.options.log.warn(
        { cacheRoot: this.options.cacheRoot, problem },
        "CACHE_ROOT unavailable: requests fail retryably (CACHE_UNAVAILABLE), none gets a final 'does not exist'",
      );
    } else {
      clearInterval(this.recheck);
      this.recheck = undefined;
      this.options.log.info({ cacheRoot: this.options.cacheRoot, was }, 'CACHE_ROOT available again');
    }
  }

  /** Stops re-checking (shutdown). */
  stop(): void {
    clearInterval(this.recheck);
    this.recheck = undefined;
  }
}
