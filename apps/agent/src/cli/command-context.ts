import type { ExitCodeValue } from './exit-codes';
import type { Terminal } from './terminal';

/** What each command group needs to register its commands: where they print, and how a run ends. */
export interface CommandContext {
  readonly term: Terminal;
  /** Wraps a command's run so that the exit code it returns becomes the process's exit code. */
  action<A extends unknown[]>(run: (...args: A) => Promise<ExitCodeValue>): (...args: A) => Promise<void>;
}

/** Runs a command that stops cleanly on Ctrl-C (its signal aborts; it reports what it left). */
export async function untilSigint(
  run: (signal: AbortSignal) => Promise<ExitCodeValue>,
): Promise<ExitCodeValue> {
  const interrupted = new AbortController();
  const onSigint = () => interrupted.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  try {
    return await run(interrupted.signal);
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}
