import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { compiled, PROJECT_ROOT } from './child-processes';

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** For failure messages: what ran and everything it printed. */
export function describeRun(args: readonly string[], run: CliRun): string {
  return `icc ${args.join(' ')} -> code ${run.code}, signal ${run.signal}\n--- stdout ---\n${run.stdout}\n--- stderr ---\n${run.stderr}`;
}

/**
 * The oracle of `icc copy --wait` riding out a lost connection: it said so, reconnected (to the same broker
 * or the next of its list), sent its request again, and ended with a successful final answer.
 */
export function expectAnsweredAfterResend(args: readonly string[], run: CliRun): void {
  expect(run.code, describeRun(args, run)).toBe(0);
  expect(run.stderr).toMatch(/lost the connection to RabbitMQ .*reconnecting/);
  expect(run.stderr).toMatch(/reconnected; request \S+ sent again/);
  expect(run.stdout).toMatch(/^(completed|already-present): /m);
}

/**
 * Runs the BUILT agent (dist/apps/agent/src/main.js) as a separate process, the way an operator or a
 * compute agent would, with a hard timeout (SIGKILL) so a hanging CLI fails the test instead of stalling it.
 */
export function runIcc(args: readonly string[], options: RunOptions = {}): Promise<CliRun> {
  return runProcess(process.execPath, [compiled('apps/agent/src/main.ts'), ...args], options);
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Told the child's pid as soon as it is started. */
  onSpawn?: (pid: number) => void;
  /** Told everything the child has printed on stderr so far, each time it prints more. */
  onStderr?: (soFar: string) => void;
}

export function runProcess(
  command: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CliRun> {
  const child = spawn(command, args, {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid !== undefined) options.onSpawn?.(child.pid);
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout.on('data', (d: Buffer) => stdout.push(d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr.push(d.toString());
    options.onStderr?.(stderr.join(''));
  });
  const timeoutMs = options.timeoutMs ?? 60_000;
  const timer = setTimeout(() => {
    stderr.push(`\n[test] hard timeout of ${timeoutMs} ms: SIGKILL\n`);
    child.kill('SIGKILL');
  }, timeoutMs);
  return new Promise((resolve, reject) => {
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: stdout.join(''), stderr: stderr.join('') });
    });
  });
}

const run = promisify(execFile);

/**
 * A Python 3 that can `import pika`: $PYTHON, then `python3` on the PATH, then the system's
 * /usr/bin/python3 (where Debian's python3-pika lands even when pyenv or a venv shadows `python3`).
 */
export async function pythonWithPika(): Promise<string> {
  const candidates = [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter((c): c is string =>
    Boolean(c),
  );
  for (const candidate of candidates) {
    try {
      await run(candidate, ['-c', 'import pika']);
      return candidate;
    } catch {
      // try the next one
    }
  }
  throw new Error(
    `no Python 3 with pika found (tried ${candidates.join(', ')}): install it with \`apt-get install -y python3-pika\` (.ci/run does), or set PYTHON`,
  );
}
