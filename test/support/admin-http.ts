import type { ConductorProcess } from './conductor-process';

export interface AdminAnswer {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON (throws when it is not JSON). */
  json<T = Record<string, unknown>>(): T;
}

/** Real HTTP (fetch) against a conductor's admin endpoint, with or without its bearer token. */
export class AdminHttp {
  constructor(
    readonly baseUrl: string,
    private readonly token?: string,
  ) {}

  /** The endpoint of a started conductor (its port comes from the 'conductor started' log line). */
  static of(conductor: ConductorProcess, token?: string, host = '127.0.0.1'): AdminHttp {
    return new AdminHttp(`http://${host}:${conductor.adminPort()}`, token);
  }

  /** `authorization`: undefined sends the configured token, null sends none, a string sends that header. */
  async get(
    path: string,
    options: { authorization?: string | null; method?: string; timeoutMs?: number } = {},
  ): Promise<AdminAnswer> {
    const headers: Record<string, string> = {};
    const authorization =
      options.authorization === undefined
        ? this.token
          ? `Bearer ${this.token}`
          : undefined
        : options.authorization;
    if (authorization) headers.authorization = authorization;
    const response = await fetch(`${this.baseUrl}${path}`, {
      method: options.method ?? 'GET',
      headers,
      signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
    });
    const text = await response.text();
    return {
      status: response.status,
      headers: response.headers,
      text,
      json: <T>() => {
        try {
          return JSON.parse(text) as T;
        } catch {
          throw new Error(`${path}: HTTP ${response.status}, not JSON: ${text.slice(0, 300)}`);
        }
      },
    };
  }

  /** GET that must answer 200 with JSON. */
  async json<T = Record<string, unknown>>(path: string): Promise<T> {
    const answer = await this.get(path);
    if (answer.status !== 200)
      throw new Error(`GET ${path}: HTTP ${answer.status}: ${answer.text.slice(0, 500)}`);
    return answer.json<T>();
  }
}

/**
 * One sample of a Prometheus text exposition: `name{labels} value`, labels matched exactly (all of them,
 * in any order). Undefined when the series is absent.
 */
export function metricValue(
  exposition: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of exposition.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      found[pair[1]!] = pair[2]!;
    const wanted = Object.entries(labels);
    if (Object.keys(found).length === wanted.length && wanted.every(([k, v]) => found[k] === v))
      return Number(m[3]);
  }
  return undefined;
}
