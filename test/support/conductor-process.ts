import { type Child, ChildProcessPool, compiled } from './child-processes';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A conductor running as a real process (the compiled app), with its JSON log lines parsed. */
export class ConductorProcess {
  private constructor(readonly child: Child<unknown>) {}

  static start(
    pool: ChildProcessPool<unknown>,
    env: Record<string, string>,
    hardTimeoutMs = 180_000,
    /** `script`: another entry that runs the conductor (a test wrapper); `launcher`: see ChildProcessPool. */
    options: { script?: string; launcher?: string[] } = {},
  ): ConductorProcess {
    return new ConductorProcess(
      pool.fork(options.script ?? compiled('apps/conductor/src/main.ts'), [], {
        hardTimeoutMs,
        env,
        launcher: options.launcher,
      }),
    );
  }

  get pid(): number {
    return this.child.pid;
  }

  logs(): LogLine[] {
    const lines: LogLine[] = [];
    for (const line of this.child.output.join('').split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(line) as LogLine);
      } catch {
        // a line still being written
      }
    }
    return lines;
  }

  async waitForLog(
    predicate: (line: LogLine) => boolean,
    what: string,
    timeoutMs = 30_000,
  ): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.logs().find(predicate);
      if (found) return found;
      if (this.child.process.exitCode !== null || this.child.process.signalCode !== null)
        throw new Error(`conductor ${this.pid} exited before ${what}:\n${this.child.output.join('')}`);
      if (Date.now() > deadline)
        throw new Error(
          `conductor ${this.pid}: no ${what} within ${timeoutMs} ms:\n${this.child.output.join('')}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Waits until it is started and its consumer is subscribed. */
  async ready(timeoutMs = 30_000): Promise<this> {
    await this.waitForLog((l) => l.msg === 'conductor started', 'start', timeoutMs);
    await this.waitForLog((l) => l.msg === 'consuming', 'subscription', timeoutMs);
    return this;
  }

  adminPort(): number {
    const line = this.logs().find((l) => l.msg === 'conductor started');
    if (!line) throw new Error('conductor not started yet');
    return line.adminPort as number;
  }

  signal(signal: NodeJS.Signals): void {
    this.child.process.kill(signal);
  }

  exited() {
    return this.child.exited;
  }
}
