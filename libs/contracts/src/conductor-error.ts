import { REASON_CODES, type ReasonCode } from './reason-codes';

/** The one error class the libs throw for expected failures; `code` is what goes on the wire. */
export class ConductorError extends Error {
  readonly retryable: boolean;

  constructor(
    readonly code: ReasonCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ConductorError';
    this.retryable = REASON_CODES[code].retryable;
  }
}

export function isConductorError(error: unknown, code?: ReasonCode): error is ConductorError {
  return error instanceof ConductorError && (code === undefined || error.code === code);
}
