import { X509Certificate, createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { NodeLockManager } from '@app/locking';
import { describeRun, runIcc } from './support/agent-cli';
import { waitFor } from './support/async';
import { launchChromium } from './support/browser';
import { conductorTestbed } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';
import { makeTempDir, removeDir } from './support/temp-dirs';
import { type IssuedPair, TestCa } from './support/test-pki';

const KiB = 1024;
const TOKEN = 'admin-tls-test-token-0123456789';

interface HttpsAnswer {
  status: number;
  body: string;
  /** sha256 fingerprint of the certificate the server showed on this connection. */
  fingerprint: string;
}

/** One GET on a fresh TLS connection (no keep-alive: every call is a new handshake), trusting only `ca`. */
function httpsGet(url: string, ca: Buffer, token = TOKEN): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const request = https.get(
      url,
      { ca, agent: false, headers: { authorization: `Bearer ${token}` }, timeout: 10_000 },
      (response) => {
        const fingerprint = (response.socket as import('node:tls').TLSSocket).getPeerCertificate()
          .fingerprint256;
        const chunks: Buffer[] = [];
        response.on('data', (c: Buffer) => chunks.push(c));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString(), fingerprint }),
        );
      },
    );
    request.on('timeout', () => request.destroy(new Error(`GET ${url}: no answer within 10 s`)));
    request.on('error', reject);
  });
}

const fingerprintOf = async (pair: IssuedPair) =>
  new X509Certificate(await fsp.readFile(pair.cert)).fingerprint256;

/** Chromium's way to trust one server key without a system CA store: the base64 sha256 of its SPKI. */
const spkiHashOf = async (pair: IssuedPair) =>
  createHash('sha256')
    .update(
      new X509Certificate(await fsp.readFile(pair.cert)).publicKey.export({ type: 'spki', format: 'der' }),
    )
    .digest('base64');

describe('admin endpoint over HTTPS', () => {
  let dir: string | undefined;
  let browser: Browser | undefined;
  const bed = conductorTestbed(['node-a', 'node-b']);
  afterEach(async () => {
    await browser?.close();
    browser = undefined;
  });
  afterAll(() => removeDir(dir));

  /** A CA, two server certificates for 127.0.0.1, and the files the conductor is pointed at (the first pair). */
  const setUp = async () => {
    dir ??= await makeTempDir('admin-pki');
    const ca = await TestCa.create(path.join(dir, String(Date.now())));
    const first = await ca.issue({ commonName: 'admin-1', ips: ['127.0.0.1'] });
    const second = await ca.issue({ commonName: 'admin-2', ips: ['127.0.0.1'] });
    const served = { cert: path.join(ca.dir, 'served.pem'), key: path.join(ca.dir, 'served.key') };
    const install = async (pair: IssuedPair) => {
      await fsp.copyFile(pair.cert, served.cert);
      await fsp.copyFile(pair.key, served.key);
    };
    await install(first);
    return { ca, caPem: await fsp.readFile(ca.cert), first, second, served, install };
  };

  /** A conductor whose admin endpoint serves `served` (its token TOKEN), and that endpoint's base URL. */
  const startOnHttps = async (id: string, served: { cert: string; key: string }) => {
    const conductor = await ConductorProcess.start(
      bed.pool,
      bed.cell!.conductorEnv({
        CONDUCTOR_ID: id,
        ADMIN_TOKEN: TOKEN,
        ADMIN_HOST: '127.0.0.1',
        ADMIN_TLS_CERT_FILE: served.cert,
        ADMIN_TLS_KEY_FILE: served.key,
      }),
    ).ready();
    return { conductor, base: `https://127.0.0.1:${conductor.adminPort()}` };
  };

  it('speaks HTTPS only, and serves a renewed certificate after SIGHUP while a copy goes on', async () => {
    const c = bed.cell!;
    const { ca, caPem, first, second, served, install } = await setUp();
    const image = await c.seed('node-a', 'hup.qcow2', 256 * KiB);
    const { conductor, base } = await startOnHttps('admin-tls', served);
    const before = await httpsGet(`${base}/status`, caPem);
    expect(before.status).toBe(200);
    expect(before.fingerprint).toBe(await fingerprintOf(first));
    // icc status over HTTPS: the CA through Node's NODE_EXTRA_CA_CERTS, the token from a file.
    const tokenFile = path.join(path.dirname(served.cert), 'token');
    await fsp.writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    const args = ['status', '--url', base, '--json'];
    const status = await runIcc(args, {
      env: { NODE_EXTRA_CA_CERTS: ca.cert, ADMIN_TOKEN_FILE: tokenFile, ADMIN_TOKEN: '' },
      timeoutMs: 30_000,
    });
    expect(status.code, describeRun(args, status)).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ conductorId: 'admin-tls' });
    // No plain HTTP on that port.
    await expect(fetch(`http://127.0.0.1:${conductor.adminPort()}/health/live`)).rejects.toThrow();

    // A copy in flight across the reload: it waits for the destination's lock, which the test holds.
    const locks = new NodeLockManager({
      root: c.root,
      conductorId: 'test-holder',
      timings: { staleMs: 2000, updateMs: 1000, safetyMarginMs: 500, pollMs: 25 },
    });
    const held = await locks.acquire(
      { node: 'node-b', imageId: 'hup.qcow2', mode: 'exclusive' },
      { timeoutMs: 5_000 },
    );
    const sent = bed.client!.send(c.topology.requestQueue.name, {
      v: 1,
      requestId: 'hup-1',
      imageId: 'hup.qcow2',
      destination: 'node-b',
      source: 'node-a',
      sha256: image.sha256,
    });
    try {
      await waitFor(
        async () => {
          const status = JSON.parse((await httpsGet(`${base}/status`, caPem)).body) as {
            inFlight: { requestIds: string[]; phase: string }[];
          };
          return status.inFlight.some(
            (f) => f.requestIds.includes('hup-1') && f.phase === 'waiting-for-lock',
          );
        },
        'hup-1 waiting for its lock',
        30_000,
      );

      await install(second);
      conductor.signal('SIGHUP');
      await conductor.waitForLog((l) => l.msg === 'admin TLS certificate reloaded', 'the reload');
      const after = await httpsGet(`${base}/status`, caPem);
      expect(after.status).toBe(200);
      expect(after.fingerprint).toBe(await fingerprintOf(second));

      // A botched renewal (a key that is not the certificate's) is refused and the current pair kept.
      await fsp.copyFile(first.key, served.key);
      conductor.signal('SIGHUP');
      const refused = await conductor.waitForLog(
        (l) => l.msg === 'admin TLS certificate not reloaded: the previous one stays in use',
        'the refused reload',
      );
      expect(JSON.stringify(refused.err)).toMatch(/ADMIN_TLS_KEY_FILE=\S+: does not match the certificate/);
      expect((await httpsGet(`${base}/status`, caPem)).fingerprint).toBe(await fingerprintOf(second));
    } finally {
      await held.release();
    }
    expect(await bed.client!.finalReply(sent, 60_000)).toMatchObject({
      requestId: 'hup-1',
      status: 'completed',
    });
    // The same process all along: started once, never stopped.
    expect(conductor.logs().filter((l) => l.msg === 'conductor started')).toHaveLength(1);
    expect(conductor.child.process.exitCode).toBe(null);
  }, 120_000);

  it('serves the status page to Chromium over HTTPS', async () => {
    const { first, served } = await setUp();
    const { base } = await startOnHttps('admin-tls-page', served);
    // Trusts exactly the served key, nothing else: a certificate error would still fail the load.
    browser = await launchChromium([`--ignore-certificate-errors-spki-list=${await spkiHashOf(first)}`]);
    const page = await browser.newPage();
    const problems: string[] = [];
    const insecure: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    page.on('request', (r) => {
      if (!r.url().startsWith(base) && !r.url().startsWith('data:')) insecure.push(r.url());
    });
    await page.goto(`${base}/#token=${TOKEN}`);
    await page.getByText('consumer consuming').waitFor({ timeout: 15_000 });
    await expect(page.locator('#conductor').textContent()).resolves.toContain('admin-tls-page');
    expect(new URL(page.url()).protocol).toBe('https:');
    expect(problems).toEqual([]);
    expect(insecure).toEqual([]);
  }, 90_000);
});
