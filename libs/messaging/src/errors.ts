/** The broker could not be reached (or the connection did not come back) within a bounded wait. */
export class BrokerUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BrokerUnavailableError';
  }
}

/** An operation on a BrokerConnection, Publisher or Consumer after close(). */
export class MessagingClosedError extends Error {
  constructor(what: string) {
    super(`${what} is closed`);
    this.name = 'MessagingClosedError';
  }
}

/** The broker did not confirm a publish (nack, channel closed before the confirm, or confirm timeout). */
export class PublishNotConfirmedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PublishNotConfirmedError';
  }
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<invalid AMQP URL>';
  }
}

/**
 * The broker accepted a publish but could not deliver it where it was sent: a `mandatory` publish came
 * back with basic.return (no queue bound or named so), or the exchange does not exist (channel closed with
 * 404 NOT_FOUND). The message is not in any queue: the caller must not count it as sent.
 */
export class PublishUnroutableError extends PublishNotConfirmedError {
  /**
   * True: this very message came back (its own destination is missing). False: the channel was closed by
   * a 404, possibly caused by another publish on it (e.g. to a deleted exchange); this one may be fine.
   */
  readonly returned: boolean;
  /**
   * The queue or exchange the broker's 404 named, when a 404 closed the channel: it may be another
   * publish's destination (a deleted events exchange), not this one's.
   */
  readonly missing?: string;

  constructor(message: string, options: { cause?: unknown; returned: boolean; missing?: string }) {
    super(message, options);
    this.name = 'PublishUnroutableError';
    this.returned = options.returned;
    this.missing = options.missing;
  }
}

/** The name in a 404's text (`NOT_FOUND - no exchange 'icc.c.events' in vhost '/'`), if it gives one. */
export function notFoundName(error: unknown): string | undefined {
  if (!isNotFound(error)) return undefined;
  return /no (?:queue|exchange) '([^']+)'/.exec((error as Error).message ?? '')?.[1];
}

/** AMQP reply code 404 NOT_FOUND: a queue or exchange named by the operation does not exist. */
export function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 404;
}
