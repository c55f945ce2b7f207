import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import { type IssuedPair, TestCa } from '../../../test/support/test-pki';
import { readCaBundle, readCertificateAndKey } from './tls-files';

describe('TLS files: read and checked before use', () => {
  let dir = '';
  let ca: TestCa;
  let pair: IssuedPair;
  let other: IssuedPair;
  beforeAll(async () => {
    dir = await makeTempDir('tls-files');
    ca = await TestCa.create(dir);
    pair = await ca.issue({ commonName: 'svc', ips: ['127.0.0.1'] });
    other = await ca.issue({ commonName: 'other', ips: ['127.0.0.1'] });
  }, 60_000);
  afterAll(() => removeDir(dir));
  const setting = (name: string, file: string) => ({ setting: name, file });

  it('accepts a CA bundle and a matching certificate and key', async () => {
    const bundle = path.join(dir, 'bundle.pem');
    await fsp.writeFile(bundle, Buffer.concat([await fsp.readFile(ca.cert), await fsp.readFile(pair.cert)]));
    expect(readCaBundle(setting('CA', bundle)).length).toBeGreaterThan(0);
    const read = readCertificateAndKey(setting('CERT', pair.cert), setting('KEY', pair.key));
    expect(read.subject).toBe('CN=svc');
    expect(read.key.toString()).toContain('PRIVATE KEY');
  });

  it('names the setting, the file and the problem', async () => {
    expect(() => readCaBundle(setting('CA', path.join(dir, 'none.pem')))).toThrow(
      /^CA=\S+none\.pem: does not exist$/,
    );
    expect(() => readCaBundle(setting('CA', pair.key))).toThrow(
      /^CA=\S+: is not a certificate: it holds no PEM/,
    );
    const broken = path.join(dir, 'broken.pem');
    await fsp.writeFile(broken, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    expect(() => readCaBundle(setting('CA', broken))).toThrow(
      /^CA=\S+broken\.pem: is not a certificate: PEM block 1/,
    );
    expect(() => readCertificateAndKey(setting('CERT', pair.cert), setting('KEY', other.key))).toThrow(
      /^KEY=\S+: does not match the certificate of CERT=\S+ \(subject CN=svc\)$/,
    );
    const notKey = path.join(dir, 'not-a-key.pem');
    await fsp.copyFile(pair.cert, notKey);
    await fsp.chmod(notKey, 0o600);
    expect(() => readCertificateAndKey(setting('CERT', pair.cert), setting('KEY', notKey))).toThrow(
      /^KEY=\S+: is not a private key/,
    );
    const later = new Date(Date.now() + 5 * 86_400_000);
    expect(() =>
      readCertificateAndKey(setting('CERT', pair.cert), setting('KEY', pair.key), undefined, later),
    ).toThrow(/^CERT=\S+: expired on /);
  });

  it('refuses a key every user may read, and an encrypted one', async () => {
    const open = path.join(dir, 'open.key');
    await fsp.copyFile(pair.key, open);
    await fsp.chmod(open, 0o644);
    expect(() => readCertificateAndKey(setting('CERT', pair.cert), setting('KEY', open))).toThrow(
      /^KEY=\S+open\.key: is readable by every user \(mode 0644\)/,
    );
    const { createPrivateKey } = await import('node:crypto');
    const encrypted = path.join(dir, 'encrypted.key');
    const pem = createPrivateKey(await fsp.readFile(pair.key)).export({
      type: 'pkcs8',
      format: 'pem',
      cipher: 'aes-256-cbc',
      passphrase: 'pass',
    });
    await fsp.writeFile(encrypted, pem, { mode: 0o600 });
    expect(() => readCertificateAndKey(setting('CERT', pair.cert), setting('KEY', encrypted))).toThrow(
      /is an encrypted private key/,
    );
  });
});
