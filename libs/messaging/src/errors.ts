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

  constructor(message: string, options: { cause?: unknown; returned: boolean }) {
    super(message, options);
    this.name = 'PublishUnroutableError';
    this.returned = options.returned;
  }
}

/** AMQP reply code 404 NOT_FOUND: a queue or exchange named by the operation does not exist. */
export function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 404;
}
