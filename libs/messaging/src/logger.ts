import pino from 'pino';

/**
 * The subset of pino's Logger this library calls, so an app can pass its own (nestjs-pino's PinoLogger
 * instance, a child logger with the cell id, or a test double that records lines).
 */
export interface MessagingLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export function defaultLogger(): MessagingLogger {
  return pino({ name: 'messaging', level: process.env.LOG_LEVEL ?? 'info' });
}

/** `err` as a loggable object; amqplib errors carry `code` (AMQP reply code) worth keeping. */
export function errorFields(error: unknown): { err: { message: string; code?: unknown; name?: string } } {
  if (error instanceof Error) {
    return { err: { name: error.name, message: error.message, code: (error as { code?: unknown }).code } };
  }
  return { err: { message: String(error) } };
}
