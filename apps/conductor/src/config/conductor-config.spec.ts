import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import { CONFIG_TABLE_DOCUMENT, withConfigTable } from './config-table';
import { cacheRootHangExitMs } from './conductor-config';
import { ConfigError, loadConductorConfig } from './load-conductor-config';

const minimal = { CELL_ID: 'cell-1', CACHE_ROOT: '/srv/cache' };

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConductorConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('conductor configuration', () => {
  it('fills defaults around the two required variables', () => {
    const config = loadConductorConfig(minimal);
    expect(config).toMatchObject({
      CELL_ID: 'cell-1',
      CACHE_ROOT: '/srv/cache',
      COPY_CONCURRENCY: 4,
      RETRY_DELAYS_MS: [1000, 5000, 30000],
    });
    expect(config.CONDUCTOR_ID).toMatch(/^[A-Za-z0-9][A-Za-z0-9._-]*-\d+$/);
  });

  it('names every bad variable and why, all at once', () => {
    const problems = problemsOf({
      CELL_ID: '../x',
      COPY_CONCURRENCY: 'lots',
      AMQP_URL: 'http://x',
      RETRY_DELAYS_MS: '5,1',
      ADMIN_TOKEN: 'short',
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^CELL_ID="\.\.\/x": .*'\.\.'/),
        expect.stringMatching(/^CACHE_ROOT: is required/),
        expect.stringMatching(/^COPY_CONCURRENCY="lots": must be a number/),
        expect.stringMatching(/^AMQP_URL="http:\/\/x": must start with amqp/),
        expect.stringMatching(/^ADMIN_TOKEN=\(redacted\): must be at least 16/),
      ]),
    );
    expect(problemsOf({ ...minimal, RETRY_DELAYS_MS: '5000,1000' })).toEqual([
      'RETRY_DELAYS_MS: must be strictly ascending',
    ]);
    expect(problemsOf({ ...minimal, RETRY_DELAYS_MS: '1000,x' })[0]).toMatch(
      /^RETRY_DELAYS_MS="1000,x": must be a comma-separated list/,
    );
  });

  it('reads AMQP_URL as a broker list and names a bad entry, its password masked', () => {
    expect(
      loadConductorConfig({ ...minimal, AMQP_URL: 'amqp://u:p@r1:5672, amqp://u:p@r2:5672' }).AMQP_URL,
    ).toEqual(['amqp://u:p@r1:5672', 'amqp://u:p@r2:5672']);
    expect(problemsOf({ ...minimal, AMQP_URL: 'amqp://u:pw1@r1:5672,amqp//u:pw2@r2:5672' })).toEqual([
      'AMQP_URL="amqp://u:***@r1:5672,amqp//u:***@r2:5672": entry 2 ("amqp//u:***@r2:5672"): must start with amqp:// or amqps:// and name a host',
    ]);
    expect(problemsOf({ ...minimal, AMQP_URL: 'amqp://r1,,amqp://r3' })[0]).toMatch(
      /^AMQP_URL=.*: entry 2 \(""\): is empty/,
    );
  });

  it('reads the origin: a URL template with {imageId}, an auth header whose value is never shown', () => {
    const config = loadConductorConfig({
      ...minimal,
      ORIGIN_URL: 'https://glance.example/v2/images/{imageId}/file',
      ORIGIN_AUTH_HEADER: 'X-Auth-Token:  tok-123',
    });
    expect(config.ORIGIN_AUTH_HEADER).toEqual({ name: 'X-Auth-Token', value: 'tok-123' });
    expect(config.ORIGIN_CHECKSUM_HEADER).toBe('X-Checksum-Sha256');
    expect(loadConductorConfig(minimal).ORIGIN_URL).toBeUndefined();
    const problems = problemsOf({
      ...minimal,
      ORIGIN_URL: 'https://glance.example/v2/images/file',
      ORIGIN_AUTH_HEADER: 'no colon secret-value-9',
      ORIGIN_ATTEMPTS: '0',
    });
    expect(problems).toEqual([
      expect.stringMatching(/^ORIGIN_URL=".*": must contain \{imageId\}/),
      'ORIGIN_AUTH_HEADER=(redacted): must be "Name: value", e.g. "X-Auth-Token: <token>"',
      expect.stringMatching(/^ORIGIN_ATTEMPTS="0": must be at least 1/),
    ]);
    expect(problemsOf({ ...minimal, ORIGIN_URL: 'ftp://x/{imageId}' })[0]).toMatch(/must be an http/);
  });

  it('never echoes a refused ADMIN_TOKEN', () => {
    const problems = problemsOf({ ...minimal, ADMIN_TOKEN: 'short-s3cret' });
    expect(problems).toEqual(['ADMIN_TOKEN=(redacted): must be at least 16 characters']);
    expect(problems.join('\n')).not.toContain('short-s3cret');
  });

  it('sizes the copy workers to the machine unless HASH_WORKERS says otherwise', () => {
    expect(loadConductorConfig(minimal).HASH_WORKERS).toBe(os.availableParallelism());
    expect(loadConductorConfig({ ...minimal, HASH_WORKERS: '0' }).HASH_WORKERS).toBe(0);
    expect(problemsOf({ ...minimal, HASH_WORKERS: '-1' })).toEqual(['HASH_WORKERS="-1": must be at least 0']);
  });

  it('checks lock timings against each other under their variable names', () => {
    expect(problemsOf({ ...minimal, LOCK_STALE_MS: '4000', LOCK_UPDATE_MS: '3000' })).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^LOCK_UPDATE_MS: must be at most half of LOCK_STALE_MS/),
      ]),
    );
  });

  it('leaves a hung CACHE_ROOT after 3 × LOCK_STALE_MS unless told otherwise, never before LOCK_STALE_MS', () => {
    expect(cacheRootHangExitMs(loadConductorConfig(minimal))).toBe(60_000);
    expect(cacheRootHangExitMs(loadConductorConfig({ ...minimal, LOCK_STALE_MS: '40000' }))).toBe(120_000);
    expect(cacheRootHangExitMs(loadConductorConfig({ ...minimal, CACHE_ROOT_HANG_EXIT_MS: '0' }))).toBe(0);
    expect(problemsOf({ ...minimal, CACHE_ROOT_HANG_EXIT_MS: '19999' })).toEqual([
      'CACHE_ROOT_HANG_EXIT_MS=19999: must be 0 (never) or at least LOCK_STALE_MS (20000)',
    ]);
  });

  it('keeps the cache cleaner off by default and reads its settings', () => {
    const config = loadConductorConfig(minimal);
    expect(config).toMatchObject({
      CLEANER_ENABLED: false,
      CLEANER_MAX_UNUSED_MS: 14 * 86_400_000,
      CLEANER_NODE_BUDGET_BYTES: 0,
      CLEANER_GRACE_MS: 3_600_000,
      NODE_READ_LIMIT: 4,
    });
    expect(
      loadConductorConfig({
        ...minimal,
        CLEANER_ENABLED: 'true',
        CLEANER_NODE_BUDGET_BYTES: '1099511627776',
      }),
    ).toMatchObject({ CLEANER_ENABLED: true, CLEANER_NODE_BUDGET_BYTES: 2 ** 40 });
    expect(loadConductorConfig({ ...minimal, CLEANER_ENABLED: '0' }).CLEANER_ENABLED).toBe(false);
    expect(
      problemsOf({ ...minimal, CLEANER_ENABLED: 'maybe', NODE_READ_LIMIT: '0', CLEANER_INTERVAL_MS: '10' }),
    ).toEqual([
      'NODE_READ_LIMIT="0": must be at least 1',
      'CLEANER_ENABLED="maybe": must be true or false (also 1/0, yes/no)',
      'CLEANER_INTERVAL_MS="10": must be at least 1000',
    ]);
  });

  it('has its table in docs/configuration.md up to date (npm run docs:config)', () => {
    const document = readFileSync(path.resolve(__dirname, '../../../..', CONFIG_TABLE_DOCUMENT), 'utf8');
    expect(document).toBe(withConfigTable(document));
  });
});

const PASSWORD = 's3cret-Passw0rd';
const TOKEN = 'token-from-a-file-0123456789';

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
