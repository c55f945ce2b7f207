import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, openSync, closeSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type LogLine, parseLogLines, waitForLogLine } from './conductor-log';

export type { LogLine } from './conductor-log';

/** dist/apps/conductor/src/main.js, next to this app's own build output. */
export function conductorScript(): string {
  // __dirname: dist/apps/agent/src/demo
  return path.resolve(__dirname, '..', '..', '..', 'conductor', 'src', 'main.js');
}

/**
 * A conductor run as a child process for the demo. Its output goes to a log file (not the terminal);
 * it runs in its own process group so that a Ctrl-C meant for the demo reaches the demo only, which
 * then stops the conductor itself (one SIGTERM, graceful).
 */
export class ConductorChild {
  private exitInfo?: { code: number | null; signal: NodeJS.Signals | null };
  private readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    readonly logFile: string,
  ) {
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve();
      });
      child.once('error', () => {
        this.exitInfo ??= { code: null, signal: null };
        resolve();
      });
    });
  }

  static start(env: Record<string, string>, logFile: string, script = conductorScript()): ConductorChild {
    if (!existsSync(script)) throw new Error(`${script} is missing: build first (npm run build)`);
    const fd = openSync(logFile, 'a');
    try {
      const child = spawn(process.execPath, [script], { env, stdio: ['ignore', fd, fd], detached: true });
      return new ConductorChild(child, logFile);
    } finally {
      closeSync(fd); // the child has its own copy
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  async logLines(): Promise<LogLine[]> {
    return parseLogLines(await fsp.readFile(this.logFile, 'utf8').catch(() => ''));
  }

  async logTail(lines = 20): Promise<string> {
    const text = await fsp.readFile(this.logFile, 'utf8').catch(() => '');
    return text.trimEnd().split('\n').slice(-lines).join('\n');
  }

  /** Waits for a log line; fails early if the conductor exits. */
  async waitForLog(
    predicate: (line: LogLine) => boolean,
    what: string,
    timeoutMs: number,
    cancel?: AbortSignal,
  ): Promise<LogLine> {
    return waitForLogLine(predicate, {
      lines: () => this.logLines(),
      gone: async () =>
        this.running
          ? undefined
          : `the conductor exited (code ${this.exitInfo?.code}, signal ${this.exitInfo?.signal}) before ${what}; its log (${this.logFile}) ends with:\n${await this.logTail()}`,
      timedOut: async () =>
        `the conductor did not log ${what} within ${timeoutMs} ms; its log (${this.logFile}) ends with:\n${await this.logTail()}`,
      timeoutMs,
      cancel,
    });
  }

  /** SIGTERM (graceful stop), then SIGKILL if it is still running after `graceMs`. */
  async stop(graceMs: number): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const killed = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (killed && this.running) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}
