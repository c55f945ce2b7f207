import { CliError, ExitCode, UsageError } from '../cli/exit-codes';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:8080';
const REQUEST_TIMEOUT_MS = 10_000;

export function validateAdminUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError('--url', `is not a valid URL (got ${JSON.stringify(raw)})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new UsageError('--url', 'must be an http:// or https:// URL');
  return url;
}

/** GET <admin url>/status: the parsed JSON body, or a CliError with the exit code the failure deserves. */
export async function fetchStatus(
  base: URL,
  token: string | undefined,
  fetchImpl: typeof fetch = fetch,
): Promise<unknown> {
  const url = new URL('status', base.href.endsWith('/') ? base.href : `${base.href}/`);
  let response: Response;
  try {
    response = await fetchImpl(url, {
      headers: { accept: 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
  } catch (error) {
    throw new CliError(
      ExitCode.UNREACHABLE,
      `cannot reach the conductor's admin endpoint at ${base.origin} (${networkReason(error)}): is the conductor running, and is --url (or ADMIN_URL) its admin address?`,
      { cause: error },
    );
  }
  if (response.status === 401 || response.status === 403) {
    throw new CliError(
      ExitCode.USAGE,
      `${url.href} answered ${response.status}: token missing or wrong (pass --token or set ADMIN_TOKEN)`,
    );
  }
  const text = await response.text();
  if (!response.ok) {
    throw new CliError(
      ExitCode.ERROR,
      `${url.href} answered HTTP ${response.status}${text ? `: ${text.slice(0, 300)}` : ''}`,
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CliError(
      ExitCode.ERROR,
      `${url.href} did not answer JSON (is this a conductor's admin endpoint?): ${text.slice(0, 200)}`,
    );
  }
}

function networkReason(error: unknown): string {
  if (error instanceof Error && error.name === 'TimeoutError')
    return `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code === 'ECONNREFUSED') return 'connection refused';
  if (cause?.code === 'ENOTFOUND') return 'host not found';
  return cause?.message ?? (error as Error).message ?? String(error);
}
