import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import { ConfigError, loadConductorConfig } from './conductor-config';

const minimal = { CELL_ID: 'cell-1', CACHE_ROOT: '/srv/cache' };
const PASSWORD = 's3cret-Passw0rd';
const TOKEN = 'token-from-a-file-0123456789';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConductorConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('conductor configuration: secrets from files (<NAME>_FILE)', () => {
  let dir = '';
  const file = async (name: string, content: string, mode = 0o600) => {
    const at = path.join(dir, name);
    await fsp.writeFile(at, content, { mode });
    await fsp.chmod(at, mode); // the umask may have taken bits off
    return at;
  };
  beforeAll(async () => {
    dir = await makeTempDir('secrets');
  });
  afterAll(() => removeDir(dir));

  it('reads AMQP_URL, ADMIN_TOKEN and ORIGIN_AUTH_HEADER from their files, without the trailing line break', async () => {
    const config = loadConductorConfig({
      ...minimal,
      AMQP_URL_FILE: await file(
        'url',
        `amqps://icc:${PASSWORD}@rabbit-1:5671,amqps://icc:${PASSWORD}@rabbit-2\n`,
      ),
      ADMIN_TOKEN_FILE: await file('token', `${TOKEN}\n`, 0o640),
      ORIGIN_AUTH_HEADER_FILE: await file('header', 'X-Auth-Token: abc def\r\n', 0o400),
    });
    expect(config.AMQP_URL).toEqual([
      `amqps://icc:${PASSWORD}@rabbit-1:5671`,
      `amqps://icc:${PASSWORD}@rabbit-2`,
    ]);
    expect(config.ADMIN_TOKEN).toBe(TOKEN);
    expect(config.ORIGIN_AUTH_HEADER).toEqual({ name: 'X-Auth-Token', value: 'abc def' });
  });

  it('refuses a variable and its file both set, a file every user may read or write, a missing or empty one', async () => {
    const url = await file('url-ok', `amqp://icc:${PASSWORD}@rabbit-1\n`);
    const problems = problemsOf({
      ...minimal,
      AMQP_URL: 'amqp://guest:guest@127.0.0.1',
      AMQP_URL_FILE: url,
      ADMIN_TOKEN_FILE: await file('token-644', TOKEN, 0o644),
      ORIGIN_AUTH_HEADER_FILE: path.join(dir, 'missing'),
    });
    expect(problems).toEqual([
      'AMQP_URL and AMQP_URL_FILE are both set: set only one of them',
      expect.stringMatching(/^ORIGIN_AUTH_HEADER_FILE=\S+missing: does not exist$/),
      expect.stringMatching(/^ADMIN_TOKEN_FILE=\S+token-644: is readable by every user \(mode 0644\)/),
    ]);
    expect(problemsOf({ ...minimal, ADMIN_TOKEN_FILE: await file('token-602', TOKEN, 0o602) })).toEqual([
      expect.stringMatching(/is writable by every user \(mode 0602\)/),
    ]);
    expect(problemsOf({ ...minimal, ADMIN_TOKEN_FILE: await file('empty', '\n') })).toEqual([
      expect.stringMatching(/^ADMIN_TOKEN_FILE=\S+empty: is empty$/),
    ]);
  });

  it('never shows a secret read from a file in a problem', async () => {
    const problems = problemsOf({
      ...minimal,
      AMQP_URL_FILE: await file('bad-url', `http://icc:${PASSWORD}@rabbit-1\n`),
      ADMIN_TOKEN_FILE: await file('short', 'short-token\n'),
      ORIGIN_AUTH_HEADER_FILE: await file('bad-header', `${PASSWORD}\n`),
    });
    expect(problems).toHaveLength(3);
    expect(problems[0]).toMatch(/^AMQP_URL \(from AMQP_URL_FILE=\S+bad-url\)=.*must start with amqp/);
    expect(problems[1]).toMatch(
      /^ORIGIN_AUTH_HEADER \(from ORIGIN_AUTH_HEADER_FILE=\S+bad-header\)=\(redacted\)/,
    );
    expect(problems[2]).toMatch(/^ADMIN_TOKEN \(from ADMIN_TOKEN_FILE=\S+short\)=\(redacted\)/);
    expect(problems.join('\n')).not.toContain(PASSWORD);
    expect(problems.join('\n')).not.toContain('short-token');
  });

  it('checks the TLS settings that only make sense together', () => {
    expect(
      problemsOf({
        ...minimal,
        AMQP_URL: 'amqps://rabbit-1,amqp://rabbit-2',
        AMQP_TLS_CERT_FILE: '/etc/icc/client.pem',
        AMQP_AUTH_MECHANISM: 'EXTERNAL',
        ADMIN_TLS_KEY_FILE: '/etc/icc/admin.key',
      }),
    ).toEqual([
      'AMQP_TLS_CERT_FILE and AMQP_TLS_KEY_FILE: set both or neither (AMQP_TLS_KEY_FILE is unset)',
      'ADMIN_TLS_CERT_FILE and ADMIN_TLS_KEY_FILE: set both or neither (ADMIN_TLS_CERT_FILE is unset)',
      'AMQP_URL: entry 2 (amqp://rabbit-2) is not amqps://: with TLS settings every broker of the list must be amqps://',
    ]);
    expect(problemsOf({ ...minimal, AMQP_URL: 'amqps://rabbit-1', AMQP_AUTH_MECHANISM: 'EXTERNAL' })).toEqual(
      ['AMQP_AUTH_MECHANISM=EXTERNAL: needs a client certificate (AMQP_TLS_CERT_FILE, AMQP_TLS_KEY_FILE)'],
    );
    expect(problemsOf({ ...minimal, AMQP_TLS_CA_FILE: 'ca.pem' })).toEqual([
      'AMQP_TLS_CA_FILE="ca.pem": must be an absolute path',
    ]);
  });
});
