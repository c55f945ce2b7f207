import { REASON_CODES, type ReasonCode } from './reason-codes';

/** The one error class the libs throw for expected failures; `code` is what goes on the wire. */
export class ReasonError extends Error {
  readonly retryable: boolean;

  constructor(
    readonly code: ReasonCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ReasonError';
    this.retryable = REASON_CODES[code].retryable;
  }
}

export function isReasonError(error: unknown, code?: ReasonCode): error is ReasonError {
  return error instanceof ReasonError && (code === undefined || error.code === code);
}
