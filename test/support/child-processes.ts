import { type ChildProcess, fork } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';

/** The folder with package.json, whether this file runs from test/support or compiled from dist/. */
export const PROJECT_ROOT = findProjectRoot(__dirname);

function findProjectRoot(start: string): string {
  for (let dir = start; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json')) && path.basename(dir) !== 'dist') return dir;
  }
  throw new Error(`no package.json above ${start}`);
}

/** Child scripts run compiled (as in production); `npm test` builds first. */
export function compiled(relativeTsPath: string): string {
  const js = path.join(PROJECT_ROOT, 'dist', relativeTsPath.replace(/\.ts$/, '.js'));
  if (!existsSync(js))
    throw new Error(`${js} is missing: run \`npm run build\` (npm test does it) before the e2e tests`);
  return js;
}

export interface Child<M> {
  process: ChildProcess;
  pid: number;
  messages: M[];
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first message (already received or future) that matches. */
  waitFor(predicate: (message: M) => boolean, timeoutMs?: number): Promise<M>;
}

/**
 * With TEST_CHILD_LOG_DIR set, every child's output is also written to `<dir>/<pid>.log` as it comes:
 * a long campaign's conductors can be watched while it runs (their output is otherwise shown only in a
 * failure report at the end).
 */
function teeToLogDir(proc: ChildProcess): void {
  const dir = process.env.TEST_CHILD_LOG_DIR;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  const file = createWriteStream(path.join(dir, `${proc.pid}.log`), { flags: 'a' });
  // A log copy that cannot be written must not fail the test, nor stop the child: the failed pipe is
  // undone, which pauses the child's output, and a paused output blocks the child once its buffer fills.
  file.on('error', () => {
    proc.stdout!.resume();
    proc.stderr!.resume();
  });
  proc.stdout!.pipe(file, { end: false });
  proc.stderr!.pipe(file, { end: false });
  proc.on('close', () => file.end());
}

/**
 * Forks children with a hard timeout each, keeps their output for failure reports, and kills whatever
 * is left in `killAll()` (call it from afterEach).
 */
export class ChildProcessPool<M> {
  private readonly children: Child<M>[] = [];

  fork(
    script: string,
    args: string[],
    /** `launcher`: a command prefix that execs node in the end (e.g. nsenter into a simulated host). */
    options: { hardTimeoutMs: number; env?: NodeJS.ProcessEnv; launcher?: string[] },
  ): Child<M> {
    const launcher = options.launcher ?? [];
    const proc = fork(script, args, {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, ...options.env },
      ...(launcher.length > 0
        ? { execPath: launcher[0], execArgv: [...launcher.slice(1), process.execPath] }
        : {}),
    });
    const messages: M[] = [];
    const output: string[] = [];
    const listeners = new Set<(m: M) => void>();
    proc.stdout!.on('data', (d: Buffer) => output.push(d.toString()));
    proc.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
    teeToLogDir(proc);
    proc.on('message', (m) => {
      messages.push(m as M);
      for (const l of listeners) l(m as M);
    });
    const hardTimeout = setTimeout(() => {
      output.push(`[test] hard timeout of ${options.hardTimeoutMs} ms: SIGKILL\n`);
      proc.kill('SIGKILL');
    }, options.hardTimeoutMs);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      proc.on('exit', (code, signal) => {
        clearTimeout(hardTimeout);
        resolve({ code, signal });
      }),
    );
    const child: Child<M> = {
      process: proc,
      pid: proc.pid!,
      messages,
      output,
      exited,
      waitFor(predicate, timeoutMs = 60_000) {
        const found = messages.find(predicate);
        if (found) return Promise.resolve(found);
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            listeners.delete(listener);
            reject(
              new Error(
                `child ${proc.pid} sent no matching message in ${timeoutMs} ms; output:\n${output.join('')}`,
              ),
            );
          }, timeoutMs);
          const listener = (m: M) => {
            if (!predicate(m)) return;
            clearTimeout(timer);
            listeners.delete(listener);
            resolve(m);
          };
          listeners.add(listener);
        });
      },
    };
    this.children.push(child);
    return child;
  }

  get all(): Child<M>[] {
    return this.children;
  }

  /** Output of every child, for a failure message. */
  report(): string {
    return this.children.map((c) => `--- child ${c.pid} ---\n${c.output.join('')}`).join('\n');
  }

  async killAll(): Promise<void> {
    for (const c of this.children) {
      if (c.process.exitCode === null && c.process.signalCode === null) {
        c.process.kill('SIGCONT');
        c.process.kill('SIGKILL');
      }
    }
    await Promise.all(this.children.map((c) => c.exited));
    this.children.length = 0;
  }
}
