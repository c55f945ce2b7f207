import { errorText, type Logger } from '@app/contracts';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { HEADER_KEY_FILE } from './header-key';

export type CacheRootState = { available: true } | { available: false; problem: string };

export interface CacheRootGuardOptions {
  cacheRoot: string;
  /** The cell's header key as this conductor read it at start (loadOrCreateHeaderKey). */
  expectedKey: Buffer;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  /** A read slower than this counts as unavailable (a hung network mount). */
  timeoutMs?: number;
  /**
   * Once started, checked this often, healthy or not: the way back from an outage is noticed (and logged)
   * by itself, and a read that never answers is noticed while nothing else reads the folder.
   */
  probeMs?: number;
  /** A read of the witness with no answer for `afterMs` ends the process through `exit` (see tick()). */
  hangExit?: { afterMs: number; exit: (message: string) => void };
  /** Reads the witness file (a spec injects one that never answers). */
  readKey?: (file: string) => Promise<string>;
  /** Monotonic milliseconds. */
  now?: () => number;
}

/**
 * Tells whether CACHE_ROOT is still the cell's folder this conductor started on. A network mount that
 * died leaves an empty local folder (or one that fails ENOTCONN, or hangs) at the same path: there, every
 * node and image looks absent, and a final UNKNOWN_NODE or SOURCE_MISSING would be a lie. The witness is
 * the cell's header key file, compared by content: it is in every cell's CACHE_ROOT from the first
 * conductor's start on, and inode or device numbers change when a FUSE mount is made again. Logs the
 * change of state once each way. Once started it checks by itself every `probeMs`, and ends the process
 * when a read has had no answer for `hangExit.afterMs`: a mount whose calls never return (a FUSE server
 * that never answers, an NFS `hard` mount of an unreachable server) holds Node's few file-system threads,
 * so nothing this process does through the file system can finish any more, while its broker connection
 * stays up and keeps its unacked deliveries from every other conductor. Leaving is safe: see
 * docs/network-file-systems.md, "A mount that hangs".
 */
export class CacheRootGuard {
  private lastProblem?: string;
  private probe?: Promise<CacheRootState>;
  private timer?: NodeJS.Timeout;
  /** A read that outlived its timeout: it holds a file-system thread until the mount answers. */
  private stuck?: Promise<unknown>;
  /** When the read now under way was issued (monotonic ms); unset while none is. */
  private readingSince?: number;
  /** How long that read has gone unanswered while this process was awake (see tick()). */
  private unansweredMs = 0;
  private lastTick?: number;
  private exiting = false;

  constructor(private readonly options: CacheRootGuardOptions) {}

  /** Starts the periodic check (unref'd: it never keeps the process alive). */
  start(): void {
    this.timer ??= setInterval(() => this.tick(), this.probeMs()).unref();
  }

  private probeMs(): number {
    return this.options.probeMs ?? 1_000;
  }

  private tick(): void {
    const now = this.now();
    if (this.readingSince !== undefined) {
      // A gap between two ticks longer than two periods is time this process did not run (SIGSTOP, a VM
      // pause, a blocked loop): on waking, its timers run before the I/O callbacks that may already hold
      // the answer, so that time does not count as the file system's.
      const from = Math.max(this.lastTick ?? now, this.readingSince);
      this.unansweredMs += Math.min(Math.max(0, now - from), 2 * this.probeMs());
    }
    this.lastTick = now;
    this.exitIfHung();
    void this.check();
  }

  private exitIfHung(): void {
    const hang = this.options.hangExit;
    if (!hang || hang.afterMs <= 0 || this.readingSince === undefined || this.exiting) return;
    const unansweredMs = Math.round(this.unansweredMs);
    if (unansweredMs < hang.afterMs) return;
    this.exiting = true;
    const file = path.join(this.options.cacheRoot, HEADER_KEY_FILE);
    const message =
      `CACHE_ROOT hangs: a read of ${file} has had no answer for ${unansweredMs} ms ` +
      `(CACHE_ROOT_HANG_EXIT_MS=${hang.afterMs}); leaving, so that a restart and the broker's redelivery ` +
      'take over what this process can no longer finish';
    this.options.log.error({ cacheRoot: this.options.cacheRoot, file, unansweredMs }, message);
    hang.exit(message);
  }

  private now(): number {
    return (this.options.now ?? performance.now.bind(performance))();
  }

  /**
   * A check whose read starts after this call (a read already under way is waited out, not shared): what
   * was read before the call cannot be vouched for by a read made before it.
   */
  async checkAfterNow(): Promise<CacheRootState> {
    await this.probe;
    return this.check();
  }

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
    const readingSince = this.now();
    this.readingSince = readingSince;
    const reading = (this.options.readKey ?? ((f) => fsp.readFile(f, 'utf8')))(file);
    void reading.then(
      () => this.readSettled(readingSince),
      () => this.readSettled(readingSince),
    );
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
          : `${file}: ${errorText(error)}`;
    } finally {
      clearTimeout(timer);
    }
    this.logTransition(problem);
    return problem === undefined ? { available: true } : { available: false, problem };
  }

  private readSettled(since: number): void {
    if (this.readingSince !== since) return;
    this.readingSince = undefined;
    this.unansweredMs = 0;
  }

  private logTransition(problem: string | undefined): void {
    if ((problem === undefined) === (this.lastProblem === undefined)) return;
    const was = this.lastProblem;
    this.lastProblem = problem;
    if (problem !== undefined) {
      this.options.log.warn(
        { cacheRoot: this.options.cacheRoot, problem },
        "CACHE_ROOT unavailable: requests fail retryably (CACHE_UNAVAILABLE), none gets a final 'does not exist'",
      );
    } else {
      this.options.log.info({ cacheRoot: this.options.cacheRoot, was }, 'CACHE_ROOT available again');
    }
  }

  /** Stops the periodic check (shutdown). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
