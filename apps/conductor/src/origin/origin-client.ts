import { ReasonError } from '@app/contracts';

export interface OriginOptions {
  /** ORIGIN_URL: `{imageId}` is replaced by the URL-encoded image id. */
  urlTemplate: string;
  authHeader?: { name: string; value: string };
  /** ORIGIN_CHECKSUM_HEADER: the response header carrying the image's sha256. */
  checksumHeader: string;
  /** ORIGIN_ATTEMPTS: connections one download may use (the first one included). */
  attempts: number;
  /** ORIGIN_IDLE_TIMEOUT_MS: no byte for this long and the connection counts as dropped. */
  idleTimeoutMs: number;
  /** Pause before the n-th retry (n from 1); growing, capped. */
  retryDelayMs?: (retry: number) => number;
  fetch?: typeof fetch;
}

/** An origin response accepted for download: what it says about the image, and its bytes. */
export interface OriginDownload {
  url: string;
  /** From Content-Length (validated), when the origin sent it. */
  size?: number;
  /** From the checksum header (validated, lower case), when the origin sent it. */
  sha256?: string;
  /**
   * The body from byte 0 to the end. A connection dropped mid-body is resumed from the last byte received
   * (Range; a 200 answer to a Range request is read past the bytes already delivered); every failure is
   * a ReasonError with an ORIGIN_* code.
   */
  chunks: AsyncIterable<Uint8Array>;
}

const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
const defaultRetryDelay = (retry: number) => Math.min(5_000, 200 * 2 ** (retry - 1));

/**
 * HTTP GETs of images from the cell's origin with Node's fetch. Everything an origin answers is outside
 * input and is checked: status, Content-Length, the checksum header, Content-Range on a resume.
 * The auth header's value never appears in an error or a log line.
 */
export class OriginClient {
  private readonly fetch: typeof fetch;
  private readonly retryDelayMs: (retry: number) => number;

  constructor(private readonly options: OriginOptions) {
    this.fetch = options.fetch ?? fetch;
    this.retryDelayMs = options.retryDelayMs ?? defaultRetryDelay;
  }

  urlFor(imageId: string): string {
    return this.options.urlTemplate.replaceAll('{imageId}', encodeURIComponent(imageId));
  }

  /** For logs and /status: the template and the auth header's name, never its value. */
  describe(): { urlTemplate: string; authHeader?: string; checksumHeader: string } {
    const { urlTemplate, authHeader, checksumHeader } = this.options;
    return {
      urlTemplate,
      ...(authHeader ? { authHeader: `${authHeader.name}: [redacted]` } : {}),
      checksumHeader,
    };
  }

  /** Opens the download (retrying refused connections and 5xx); the body is read through `chunks`. */
  async open(imageId: string, signal?: AbortSignal): Promise<OriginDownload> {
    const url = this.urlFor(imageId);
    const budget = { left: this.options.attempts };
    const first = await this.request(url, 0, undefined, budget, signal);
    const size = contentLength(first.response, url);
    const sha256 = this.checksumOf(first.response, url);
    const etag = first.response.headers.get('etag') ?? undefined;
    return { url, size, sha256, chunks: this.body(url, first, size, etag, budget, signal) };
  }

  private async *body(
    url: string,
    first: Connection,
    size: number | undefined,
    etag: string | undefined,
    budget: { left: number },
    signal: AbortSignal | undefined,
  ): AsyncGenerator<Uint8Array> {
    let connection: Connection | undefined = first;
    let received = 0;
    for (;;) {
      if (!connection) {
        connection = await this.request(url, received, etag, budget, signal);
        const now = connection.response.headers.get('etag') ?? undefined;
        if (etag !== undefined && now !== undefined && now !== etag) {
          connection.close();
          // Other bytes than those already written: this attempt is lost, a new one starts from byte 0.
          throw new ReasonError(
            'ORIGIN_UNAVAILABLE',
            `origin ${url}: the image changed at the origin during the download (ETag ${etag}, now ${now}); nothing was published`,
          );
        }
      }
      // A 200 to a resume starts again from byte 0: skip what was already delivered.
      let skip = connection.offset === received ? 0 : received;
      try {
        for await (const chunk of connection.chunks()) {
          let data = chunk;
          if (skip > 0) {
            const dropped = Math.min(skip, data.byteLength);
            skip -= dropped;
            data = data.subarray(dropped);
            if (data.byteLength === 0) continue;
          }
          received += data.byteLength;
          if (size !== undefined && received > size)
            throw new ReasonError(
              'ORIGIN_BAD_RESPONSE',
              `origin ${url}: more bytes than its Content-Length ${size}; nothing was published`,
            );
          yield data;
        }
      } catch (error) {
        // Our own abort (shutdown, a lost lock) ends the download with its reason, never a resume.
        if (signal?.aborted) throw signal.reason;
        if (error instanceof ReasonError) throw error;
        connection.close();
        connection = undefined;
        if (budget.left <= 0)
          throw new ReasonError(
            'ORIGIN_UNAVAILABLE',
            `origin ${url}: connection dropped after ${received} bytes on the last of ${this.options.attempts} attempts (${describeError(error)}); nothing was published`,
            { cause: error },
          );
        await pause(this.retryDelayMs(this.options.attempts - budget.left), signal);
        continue;
      }
      if (size !== undefined && received < size) {
        // The server closed cleanly but early: resume like a drop.
        connection = undefined;
        if (budget.left <= 0)
          throw new ReasonError(
            'ORIGIN_UNAVAILABLE',
            `origin ${url}: body ended after ${received} of ${size} bytes on the last of ${this.options.attempts} attempts; nothing was published`,
          );
        continue;
      }
      return;
    }
  }

  /** One GET from `offset`, with its retries for refused connections and 5xx. */
  private async request(
    url: string,
    offset: number,
    etag: string | undefined,
    budget: { left: number },
    signal: AbortSignal | undefined,
  ): Promise<Connection> {
    for (;;) {
      budget.left -= 1;
      const attempt = this.options.attempts - budget.left;
      const idle = new IdleTimer(this.options.idleTimeoutMs, signal);
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (this.options.authHeader) headers[this.options.authHeader.name] = this.options.authHeader.value;
      if (offset > 0) {
        headers.range = `bytes=${offset}-`;
        if (etag && !etag.startsWith('W/')) headers['if-range'] = etag;
      }
      let response: Response;
      try {
        response = await this.fetch(url, { headers, signal: idle.signal, redirect: 'follow' });
      } catch (error) {
        idle.stop();
        if (signal?.aborted) throw signal.reason;
        if (budget.left <= 0)
          throw new ReasonError(
            'ORIGIN_UNAVAILABLE',
            `origin ${url}: ${describeError(error)} (attempt ${attempt} of ${this.options.attempts}); nothing was published`,
            { cause: error },
          );
        await pause(this.retryDelayMs(attempt), signal);
        continue;
      }
      const status = response.status;
      if (status === 200 || (status === 206 && offset > 0)) {
        const start = status === 206 ? rangeStart(response, url, offset) : 0;
        return new Connection(response, start, idle);
      }
      idle.stop();
      await response.body?.cancel().catch(() => undefined);
      if (status === 404 || status === 410)
        throw new ReasonError(
          'ORIGIN_NOT_FOUND',
          `origin ${url}: ${status}: the origin does not have the image`,
        );
      if (status === 401 || status === 403)
        throw new ReasonError(
          'ORIGIN_UNAUTHORIZED',
          `origin ${url}: ${status}: credentials refused${this.options.authHeader ? ` (header ${this.options.authHeader.name})` : ' (no ORIGIN_AUTH_HEADER configured)'}`,
        );
      if (status >= 500 || status === 429 || status === 408) {
        if (budget.left <= 0)
          throw new ReasonError(
            'ORIGIN_UNAVAILABLE',
            `origin ${url}: ${status} on the last of ${this.options.attempts} attempts; nothing was published`,
          );
        await pause(this.retryDelayMs(attempt), signal);
        continue;
      }
      throw new ReasonError(
        'ORIGIN_BAD_RESPONSE',
        `origin ${url}: unexpected status ${status}${offset > 0 ? ` to a resume from byte ${offset}` : ''}; nothing was published`,
      );
    }
  }

  private checksumOf(response: Response, url: string): string | undefined {
    const name = this.options.checksumHeader;
    const raw = response.headers.get(name);
    if (raw === null) return undefined;
    const value = raw.trim();
    if (!SHA256_HEX.test(value))
      throw new ReasonError(
        'ORIGIN_BAD_RESPONSE',
        `origin ${url}: header ${name} must be a sha256 (64 hex digits), got ${JSON.stringify(value.slice(0, 80))}; nothing was downloaded`,
      );
    return value.toLowerCase();
  }
}

/** One response being read, with its idle timer (a stall aborts the fetch, which ends the body). */
class Connection {
  constructor(
    readonly response: Response,
    /** The byte of the image its body starts at. */
    readonly offset: number,
    private readonly idle: IdleTimer,
  ) {}

  async *chunks(): AsyncGenerator<Uint8Array> {
    const body = this.response.body;
    if (!body) return;
    try {
      for await (const chunk of body) {
        this.idle.touch();
        yield chunk as Uint8Array;
      }
    } finally {
      this.idle.stop();
    }
  }

  close(): void {
    this.idle.stop();
    this.response.body?.cancel().catch(() => undefined);
  }
}

class IdleTimer {
  private readonly controller = new AbortController();
  readonly signal: AbortSignal;
  private timer: NodeJS.Timeout;

  constructor(
    private readonly ms: number,
    outer: AbortSignal | undefined,
  ) {
    this.signal = outer ? AbortSignal.any([outer, this.controller.signal]) : this.controller.signal;
    this.timer = this.arm();
  }

  touch(): void {
    clearTimeout(this.timer);
    this.timer = this.arm();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private arm(): NodeJS.Timeout {
    return setTimeout(
      () => this.controller.abort(new Error(`no byte for ${this.ms} ms (ORIGIN_IDLE_TIMEOUT_MS)`)),
      this.ms,
    );
  }
}

function contentLength(response: Response, url: string): number | undefined {
  const raw = response.headers.get('content-length');
  if (raw === null) return undefined;
  if (!/^\d{1,16}$/.test(raw.trim()) || !Number.isSafeInteger(Number(raw)))
    throw new ReasonError(
      'ORIGIN_BAD_RESPONSE',
      `origin ${url}: Content-Length must be a whole number of bytes, got ${JSON.stringify(raw.slice(0, 40))}`,
    );
  return Number(raw);
}

/** The start of a 206's Content-Range, which must be the offset asked for. */
function rangeStart(response: Response, url: string, offset: number): number {
  const raw = response.headers.get('content-range') ?? '';
  const match = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(raw.trim());
  if (!match || Number(match[1]) !== offset)
    throw new ReasonError(
      'ORIGIN_BAD_RESPONSE',
      `origin ${url}: a resume from byte ${offset} was answered with Content-Range ${JSON.stringify(raw.slice(0, 80))}; nothing was published`,
    );
  return offset;
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }, ms);
    const aborted = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
}
