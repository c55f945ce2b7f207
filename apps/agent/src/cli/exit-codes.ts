/**
 * The agent's exit codes: part of its interface (scripts on compute agents branch on them), documented in
 * `icc --help` and apps/agent/README.md. Keep the three in step.
 */
export const ExitCode = {
  /** Done: the copy completed or the image was already present; or the request was published (no --wait). */
  OK: 0,
  /** Something unexpected (a bug, or a file-system error outside the cases below). */
  ERROR: 1,
  /** Bad arguments or usage (also: admin token missing or wrong). Retrying the same command will not help. */
  USAGE: 2,
  /** The copy failed for good (a final failed result: SOURCE_MISSING, CHECKSUM_MISMATCH, RETRIES_EXHAUSTED, ...). */
  FAILED: 3,
  /** No final result within --timeout. The request stays queued; its result is still published later. */
  TIMED_OUT: 4,
  /** RabbitMQ (or the conductor's admin endpoint) is not reachable, or the cell has no request queue. */
  UNREACHABLE: 5,
  /** Interrupted by Ctrl-C (128 + SIGINT), after cleaning up. */
  INTERRUPTED: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export const EXIT_CODES_HELP = `Exit codes:
  0  completed, or already present (or, without --wait, published)
  1  unexpected error
  2  bad arguments or usage (the message names the flag); admin token missing or wrong
  3  the copy failed (a final failed result; the reason code is printed)
  4  timed out waiting for the final result (the request stays queued)
  5  RabbitMQ or the conductor's admin endpoint is unreachable, or the cell has no request queue`;

/** An error that ends the command with a given exit code and a message meant for a person. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCodeValue,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CliError';
  }
}

/** A bad flag or argument: the message starts with the flag's name. */
export class UsageError extends CliError {
  constructor(
    readonly flag: string,
    reason: string,
  ) {
    super(ExitCode.USAGE, `${flag}: ${reason}`);
    this.name = 'UsageError';
  }
}
