/** A broker list entry that is not a usable AMQP URL; `index` is 1-based, as people count. */
export class BrokerUrlError extends Error {
  constructor(
    readonly index: number,
    /** The entry as given, password masked. */
    readonly entry: string,
    readonly problem: string,
  ) {
    super(`entry ${index} (${JSON.stringify(entry)}): ${problem}`);
    this.name = 'BrokerUrlError';
  }
}

/**
 * Splits a comma-separated broker list (`AMQP_URL`, `--amqp-url`) into its URLs and checks each one, so a
 * typo in the third entry stops the program at start instead of surfacing at the first fail-over. Commas
 * cannot appear unescaped in a URL's user, password or host, so splitting on them is safe; a password
 * containing one must be percent-encoded (`%2C`), as in any URL. Errors show the entry password-masked.
 */
export function parseBrokerUrls(list: string): string[] {
  const entries = list.split(',').map((entry) => entry.trim());
  if (entries.every((entry) => entry === '')) throw new BrokerUrlError(1, '', 'the list is empty');
  return entries.map((entry, i) => {
    const fail = (problem: string) => new BrokerUrlError(i + 1, maskPassword(entry), problem);
    if (entry === '') throw fail('is empty (two commas in a row, or a trailing comma)');
    if (!/^amqps?:\/\/[^/]/.test(entry)) throw fail('must start with amqp:// or amqps:// and name a host');
    let parsed: URL;
    try {
      parsed = new URL(entry);
    } catch {
      throw fail('is not a valid URL');
    }
    if (parsed.hostname === '') throw fail('has no host');
    return entry;
  });
}

/** The entry as written, its password (if any) replaced by `***`; also for a string that is no URL. */
export function maskPassword(entry: string): string {
  const at = entry.lastIndexOf('@');
  if (at < 0) return entry;
  const colon = entry.lastIndexOf(':', at);
  // A colon right before `//` is the scheme's: then there is no password.
  if (colon < 0 || entry.startsWith('//', colon + 1)) return entry;
  return `${entry.slice(0, colon)}:***${entry.slice(at)}`;
}

/** A broker list with every password masked, for messages and logs. */
export function maskBrokerList(list: string): string {
  return list
    .split(',')
    .map((entry) => maskPassword(entry.trim()))
    .join(',');
}

/** `host:port` of a URL, for status pages and logs (no user, no password, no vhost). */
export function brokerAddress(url: string): string {
  try {
    const parsed = new URL(url);
    const port = parsed.port || (parsed.protocol === 'amqps:' ? '5671' : '5672');
    return `${parsed.hostname}:${port}`;
  } catch {
    return '<invalid AMQP URL>';
  }
}

export interface RotationOptions {
  /** Delay before the first retry after a loss or a failed attempt; doubles per failed attempt. */
  initialDelayMs: number;
  /** Cap of the delay, jitter included. */
  maxDelayMs: number;
  /** Fraction (0..1) of random spread around each delay, so a fleet does not reconnect in lockstep. */
  jitter: number;
  /** Injectable for specs; Math.random by default. */
  random?: () => number;
}

/**
 * Which broker to dial next, and after how long. The first attempt goes to the first URL at once; every
 * further attempt (after a failed one or after a loss) goes to the next URL in the list, round and round,
 * so a stopped node is left at once for the next one. The delay grows per failed attempt in a row
 * (exponential, capped, with jitter) and starts over after a success, so a fleet that lost its node
 * moves to another within about `initialDelayMs`, yet a cell whose whole cluster is down does not
 * hammer it.
 */
export class BrokerRotation {
  private nextIndex = 0;
  private failuresInRow = 0;
  private readonly random: () => number;

  constructor(
    readonly urls: readonly string[],
    private readonly options: RotationOptions,
  ) {
    if (urls.length === 0) throw new Error('BrokerRotation needs at least one URL');
    this.random = options.random ?? Math.random;
  }

  /** The URL of the first attempt: the head of the list. */
  first(): { url: string; index: number } {
    this.nextIndex = 1 % this.urls.length;
    return { url: this.urls[0], index: 0 };
  }

  /** After a failed attempt or a lost connection: the next URL and the delay to wait before dialling it. */
  next(): { url: string; index: number; delayMs: number; attempt: number } {
    this.failuresInRow += 1;
    const index = this.nextIndex;
    this.nextIndex = (index + 1) % this.urls.length;
    return {
      url: this.urls[index],
      index,
      delayMs: this.delay(this.failuresInRow),
      attempt: this.failuresInRow,
    };
  }

  /** A connection succeeded: the next loss starts again from the shortest delay. */
  succeeded(): void {
    this.failuresInRow = 0;
  }

  private delay(attempt: number): number {
    const { initialDelayMs, maxDelayMs } = this.options;
    const jitter = Math.min(1, Math.max(0, this.options.jitter));
    // The cap applies to the delay with its jitter, so the base is capped below maxDelayMs.
    const base = Math.min(maxDelayMs / (1 + jitter), initialDelayMs * 2 ** (attempt - 1));
    const spread = base * jitter * (2 * this.random() - 1);
    return Math.max(0, Math.round(base + spread));
  }
}
