import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import { UsageError } from '../cli/exit-codes';
import { resolveBrokerTarget } from './broker-login';
import { runStatus } from '../status/status-command';

/** The UsageError message of a call that must be refused. */
function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
  throw new Error('not refused');
}

describe('icc broker flags: URL file, TLS, login mechanism', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await makeTempDir('icc-login');
  });
  afterAll(() => removeDir(dir));

  it('refuses an empty --amqp-url (a usage error, exit 2) instead of falling back to the default broker', () => {
    expect(refusal(() => resolveBrokerTarget({ amqpUrl: '' }))).toMatch(/^--amqp-url: /);
    expect(resolveBrokerTarget({}).urls).toEqual(['amqp://guest:guest@127.0.0.1:5672']);
  });

  it('reads the broker list from --amqp-url-file, and never from both it and --amqp-url', async () => {
    const file = path.join(dir, 'url');
    await fsp.writeFile(file, 'amqp://icc:pw@rabbit-1,amqp://icc:pw@rabbit-2\n', { mode: 0o600 });
    expect(resolveBrokerTarget({ amqpUrlFile: file })).toEqual({
      urls: ['amqp://icc:pw@rabbit-1', 'amqp://icc:pw@rabbit-2'],
      tls: undefined,
      auth: 'plain',
    });
    expect(refusal(() => resolveBrokerTarget({ amqpUrl: 'amqp://x', amqpUrlFile: file }))).toMatch(
      /^--amqp-url: and --amqp-url-file are both set \(flags or environment\)/,
    );
    await fsp.chmod(file, 0o644);
    expect(refusal(() => resolveBrokerTarget({ amqpUrlFile: file }))).toMatch(
      /^--amqp-url-file: \S+url: is readable by every user/,
    );
  });

  it('refuses TLS flags that do not go together, before reading any file', () => {
    expect(refusal(() => resolveBrokerTarget({ amqpUrl: 'amqps://r', amqpTlsCertFile: '/c.pem' }))).toMatch(
      /^--amqp-tls-key-file: is needed too/,
    );
    expect(
      refusal(() => resolveBrokerTarget({ amqpUrl: 'amqps://r', amqpAuthMechanism: 'EXTERNAL' })),
    ).toMatch(/^--amqp-auth-mechanism: EXTERNAL needs a client certificate/);
    expect(refusal(() => resolveBrokerTarget({ amqpUrl: 'amqp://r', amqpTlsCaFile: '/ca.pem' }))).toMatch(
      /^--amqp-url: entry 1 \(amqp:\/\/r\) is not amqps:\/\//,
    );
  });

  it('icc status: --token and --token-file are exclusive', async () => {
    const file = path.join(dir, 'token');
    await fsp.writeFile(file, 'token\n', { mode: 0o600 });
    const term = { out: () => {}, err: () => {} } as never;
    await expect(runStatus({ url: 'http://127.0.0.1:1', token: 'x', tokenFile: file }, term)).rejects.toThrow(
      /^--token: and --token-file are both set/,
    );
  });
});
