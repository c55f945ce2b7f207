/**
 * The subset of pino's Logger our code calls, so each program passes its own (nestjs-pino's PinoLogger, a
 * child logger with the cell id, or a test double that records lines) to libs that must not depend on it.
 */
export interface Logger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}
