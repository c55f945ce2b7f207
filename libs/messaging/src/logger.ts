import pino from 'pino';
import type { Logger } from '@app/contracts';

export function defaultLogger(): Logger {
  return pino({ name: 'messaging', level: process.env.LOG_LEVEL ?? 'info' });
}

/** `err` as a loggable object; amqplib errors carry `code` (AMQP reply code) worth keeping. */
export function errorFields(error: unknown): { err: { message: string; code?: unknown; name?: string } } {
  if (error instanceof Error) {
    return { err: { name: error.name, message: error.message, code: (error as { code?: unknown }).code } };
  }
  return { err: { message: String(error) } };
}
