import { secretFlag } from '../cli/credential-flags';
import { ExitCode, type ExitCodeValue } from '../cli/exit-codes';
import type { Terminal } from '../cli/terminal';
import { fetchStatus, validateAdminUrl } from './status-client';
import { renderStatus } from './status-render';

export interface StatusCommandOptions {
  url: string;
  token?: string;
  tokenFile?: string;
  json?: boolean;
}

/** `icc status`: a conductor's GET /status, as tables (or the raw JSON with --json). */
export async function runStatus(options: StatusCommandOptions, term: Terminal): Promise<ExitCodeValue> {
  const url = validateAdminUrl(options.url);
  const token = secretFlag(
    { flag: '--token', given: options.token },
    { flag: '--token-file', given: options.tokenFile },
  );
  const status = await fetchStatus(url, token);
  term.out(options.json ? JSON.stringify(status) : renderStatus(status));
  return ExitCode.OK;
}
