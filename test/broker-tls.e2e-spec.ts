import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRun, runIcc } from './support/agent-cli';
import { conductorTestbed } from './support/conductor-harness';
import { ConductorProcess, type LogLine } from './support/conductor-process';
import { freePort } from './support/free-port';
import { type PrivateBroker, usePrivateBroker } from './support/private-broker';
import { RawAmqpClient } from './support/raw-amqp-client';
import { makeTempDir, removeDir } from './support/temp-dirs';
import { type IssuedPair, TestCa } from './support/test-pki';

const KiB = 1024;
/** The CN of the conductor's client certificate: the user RabbitMQ's EXTERNAL login maps it to. */
const CONDUCTOR_USER = 'icc-tls-conductor';

interface Pki {
  dir: string;
  ca: TestCa;
  wrongCa: TestCa;
  server: IssuedPair;
  client: IssuedPair;
}

/**
 * TLS to RabbitMQ against a node of the test's own: an amqps:// listener with a certificate of the
 * test's CA (for 127.0.0.1 only), that requires a client certificate and offers EXTERNAL login.
 */
describe('conductor and icc: TLS to RabbitMQ', () => {
  let pki: Pki | undefined;
  const makePki = async (): Promise<Pki> => {
    const dir = await makeTempDir('pki');
    const ca = await TestCa.create(dir);
    const wrongCa = await TestCa.create(dir, 'wrong-ca');
    const server = await ca.issue({ commonName: 'broker', ips: ['127.0.0.1'] });
    const client = await ca.issue({ commonName: CONDUCTOR_USER, usage: 'client' });
    return (pki = { dir, ca, wrongCa, server, client });
  };
  const privateBroker = usePrivateBroker(async () => {
    const { ca, server } = await makePki();
    return {
      tls: {
        caFile: ca.cert,
        certFile: server.cert,
        keyFile: server.key,
        requireClientCert: true,
        external: true,
      },
    };
  });
  afterAll(() => removeDir(pki?.dir));
  const bed = conductorTestbed(['node-a', 'node-b']);

  /** The broker, with the conductor's certificate user allowed on the default vhost. */
  let userAdded = false;
  const broker = async (): Promise<PrivateBroker> => {
    const node = await privateBroker();
    if (!userAdded) {
      await node.ctl(['add_user', CONDUCTOR_USER, randomBytes(16).toString('hex')]);
      await node.ctl(['set_permissions', '-p', '/', CONDUCTOR_USER, '.*', '.*', '.*']);
      userAdded = true;
    }
    return node;
  };

  const tlsEnv = (overrides: Record<string, string> = {}) => ({
    AMQP_TLS_CA_FILE: pki!.ca.cert,
    AMQP_TLS_CERT_FILE: pki!.client.cert,
    AMQP_TLS_KEY_FILE: pki!.client.key,
    ...overrides,
  });

  const failedAttempt = (conductor: ConductorProcess, pattern: RegExp): Promise<LogLine> =>
    conductor.waitForLog(
      (l) => l.msg === 'RabbitMQ connection attempt failed' && pattern.test(JSON.stringify(l.err ?? {})),
      `a failed connection attempt matching ${pattern}`,
      60_000,
    );

  it('copies over TLS with an EXTERNAL (certificate) login, after failing over from a dead amqps:// entry; icc copies over mutual TLS too', async () => {
    const node = await broker();
    const c = bed.cell!;
    const image = await c.seed('node-a', 'tls.qcow2', 256 * KiB);
    const deadPort = await freePort();
    const conductor = await ConductorProcess.start(
      bed.pool,
      c.conductorEnv(
        tlsEnv({
          CONDUCTOR_ID: 'tls-external',
          // No user, no password: the broker takes the user from the certificate.
          AMQP_URL: `amqps://127.0.0.1:${deadPort},${node.tlsUrl('')}`,
          AMQP_AUTH_MECHANISM: 'EXTERNAL',
        }),
      ),
    ).ready(60_000);
    expect(conductor.logs().find((l) => l.msg === 'conductor started')).toMatchObject({
      brokerTls: true,
      brokerAuth: 'external',
    });
    // The broker's own view: the conductor's connection is TLS, and its user is the certificate's CN.
    const connections = JSON.parse(
      await node.ctl(['list_connections', 'client_properties', 'ssl', 'user', '--formatter', 'json']),
    ) as { ssl: boolean; user: string; client_properties: unknown }[];
    const mine = connections.find((x) =>
      JSON.stringify(x.client_properties).includes('conductor-tls-external'),
    );
    expect(mine, JSON.stringify(connections)).toMatchObject({ ssl: true, user: CONDUCTOR_USER });

    const client = await RawAmqpClient.open(node.url);
    try {
      const sent = client.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: 'tls-1',
        imageId: 'tls.qcow2',
        destination: 'node-b',
        source: 'node-a',
        sha256: image.sha256,
      });
      expect(await client.finalReply(sent, 60_000)).toMatchObject({ status: 'completed' });
    } finally {
      await client.close();
    }

    // icc: PLAIN login (guest) over the same mutual-TLS listener, files from the same variables, and the
    // URL with its password from a file.
    const urlFile = path.join(pki!.dir, 'amqp-url');
    await fsp.writeFile(urlFile, `${node.tlsUrl()}\n`, { mode: 0o600 });
    const args = ['copy', 'tls.qcow2', '--to', 'node-b', '--from', 'node-a', '--cell', c.cellId, '--wait'];
    const run = await runIcc(args, {
      env: { ...tlsEnv({ AMQP_URL_FILE: urlFile }), AMQP_URL: '', CELL_ID: c.cellId },
      timeoutMs: 60_000,
    });
    expect(run.code, describeRun(args, run)).toBe(0);
    expect(run.stdout).toMatch(/^(completed|already-present): /m);
  }, 240_000);

  it('refuses a broker certificate of another CA, and one not made for the name dialled, with a clear error', async () => {
    const node = await broker();
    const c = bed.cell!;
    const wrongCa = await ConductorProcess.start(
      bed.pool,
      c.conductorEnv(
        tlsEnv({
          CONDUCTOR_ID: 'tls-wrong-ca',
          AMQP_URL: node.tlsUrl(),
          AMQP_TLS_CA_FILE: pki!.wrongCa.cert,
        }),
      ),
    );
    const wrongName = await ConductorProcess.start(
      bed.pool,
      c.conductorEnv(
        tlsEnv({
          CONDUCTOR_ID: 'tls-wrong-name',
          AMQP_URL: node.tlsUrl(),
          AMQP_TLS_SERVERNAME: 'wrong.example',
        }),
      ),
    );
    const [untrusted, misnamed] = await Promise.all([
      failedAttempt(wrongCa, /is not trusted/),
      failedAttempt(wrongName, /not for the name dialled/),
    ]);
    expect(JSON.stringify(untrusted.err)).toMatch(/127\.0\.0\.1:\d+.*check the CA file/);
    expect(JSON.stringify(misnamed.err)).toMatch(/wrong\.example/);
    // Neither ever got connected: nothing consumed with an unverified broker.
    for (const conductor of [wrongCa, wrongName])
      expect(conductor.logs().some((l) => l.msg === 'connected to RabbitMQ')).toBe(false);

    const args = ['copy', 'x.qcow2', '--to', 'node-b', '--cell', c.cellId];
    const run = await runIcc(args, {
      env: tlsEnv({ AMQP_URL: node.tlsUrl(), AMQP_TLS_CA_FILE: pki!.wrongCa.cert }),
      timeoutMs: 60_000,
    });
    expect(run.code, describeRun(args, run)).toBe(5);
    expect(run.stderr).toMatch(/is not trusted .*check the CA file/);
  }, 120_000);

  it('is refused by a node that requires a client certificate when it shows none', async () => {
    const node = await broker();
    const c = bed.cell!;
    const conductor = await ConductorProcess.start(
      bed.pool,
      c.conductorEnv({
        CONDUCTOR_ID: 'tls-no-cert',
        AMQP_URL: node.tlsUrl(),
        AMQP_TLS_CA_FILE: pki!.ca.cert,
      }),
    );
    const refused = await failedAttempt(conductor, /requires a client certificate|refused the handshake/);
    expect(JSON.stringify(refused.err)).toMatch(/127\.0\.0\.1:\d+/);
    expect(conductor.logs().some((l) => l.msg === 'connected to RabbitMQ')).toBe(false);
  }, 120_000);

  it('stops at start (exit 78) naming the setting and the file when a TLS file is unusable', async () => {
    const c = bed.cell!;
    const cases: [Record<string, string>, RegExp][] = [
      [
        { AMQP_TLS_CA_FILE: path.join(pki!.dir, 'missing.pem') },
        /AMQP_TLS_CA_FILE=\S+missing\.pem: does not exist/,
      ],
      [{ AMQP_TLS_CA_FILE: pki!.client.key }, /AMQP_TLS_CA_FILE=\S+: is not a certificate/],
      [
        { AMQP_TLS_KEY_FILE: pki!.server.key },
        /AMQP_TLS_KEY_FILE=\S+: does not match the certificate of AMQP_TLS_CERT_FILE=/,
      ],
    ];
    for (const [overrides, message] of cases) {
      const conductor = ConductorProcess.start(
        bed.pool,
        c.conductorEnv(tlsEnv({ AMQP_URL: 'amqps://127.0.0.1:5671', ...overrides })),
      );
      const exit = await conductor.exited();
      const stderr = conductor.child.process.stderr!;
      if (!stderr.readableEnded) await once(stderr, 'end'); // 'exit' may come before the last output
      expect(exit.code, conductor.child.output.join('')).toBe(78);
      expect(conductor.child.output.join('')).toMatch(message);
    }
  }, 60_000);
});
