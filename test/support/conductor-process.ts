import { type LogLine, parseLogLines, waitForLogLine } from '../../apps/agent/src/demo/conductor-log';
import { type Child, ChildProcessPool, compiled } from './child-processes';

export type { LogLine } from '../../apps/agent/src/demo/conductor-log';

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
    return parseLogLines(this.child.output.join(''));
  }

  waitForLog(predicate: (line: LogLine) => boolean, what: string, timeoutMs = 30_000): Promise<LogLine> {
    const { process, output } = this.child;
    return waitForLogLine(predicate, {
      lines: () => this.logs(),
      gone: () =>
        process.exitCode !== null || process.signalCode !== null
          ? `conductor ${this.pid} exited before ${what}:\n${output.join('')}`
          : undefined,
      timedOut: () => `conductor ${this.pid}: no ${what} within ${timeoutMs} ms:\n${output.join('')}`,
      timeoutMs,
    });
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
