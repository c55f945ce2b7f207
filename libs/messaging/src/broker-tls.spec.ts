import { describe, expect, it } from 'vitest';
import { BrokerConnection } from './broker-connection';
import { brokerSocketOptions, describeTlsFailure, plainEntriesProblem } from './broker-tls';
import { recordingLogger } from '../../../test/support/recording-logger';

const tlsError = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('broker TLS', () => {
  it('hands the CA, client certificate, server name and EXTERNAL login to amqplib', async () => {
    const seen: Record<string, unknown>[] = [];
    const connection = new BrokerConnection({
      url: 'amqps://rabbit-1:5671',
      connectionName: 'spec',
      tls: {
        ca: Buffer.from('ca'),
        cert: Buffer.from('cert'),
        key: Buffer.from('key'),
        servername: 'rabbit',
      },
      auth: 'external',
      logger: recordingLogger(),
      connect: (async (_url: unknown, options: Record<string, unknown>) => {
        seen.push(options);
        throw tlsError('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames");
      }) as never,
    });
    const failed = new Promise<Error>((resolve) =>
      connection.on('connect-failed', ({ error }) => resolve(error)),
    );
    connection.start();
    const error = await failed;
    await connection.close();
    expect(seen[0]).toMatchObject({
      ca: Buffer.from('ca'),
      cert: Buffer.from('cert'),
      key: Buffer.from('key'),
      servername: 'rabbit',
      credentials: { mechanism: 'EXTERNAL' },
      clientProperties: { connection_name: 'spec' },
    });
    expect(error.message).toMatch(
      /^TLS: the certificate of the broker at rabbit-1:5671 is not for the name dialled/,
    );
  });

  it('adds nothing for a plain connection', () => {
    expect(brokerSocketOptions(undefined, 'plain')).toEqual({});
  });

  it('says which side refused a handshake, and leaves other errors alone', () => {
    const url = 'amqps://u:p@rabbit-2:5671';
    expect(describeTlsFailure(tlsError('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed'), url).message).toMatch(
      /^TLS: the certificate of the broker at rabbit-2:5671 is not trusted \(SELF_SIGNED_CERT_IN_CHAIN: self-signed\); check the CA file$/,
    );
    expect(
      describeTlsFailure(tlsError('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'alert 116'), url).message,
    ).toMatch(/^TLS: the broker at rabbit-2:5671 requires a client certificate/);
    const refused = tlsError('ECONNREFUSED', 'connect ECONNREFUSED');
    expect(describeTlsFailure(refused, url)).toBe(refused);
  });

  it('refuses a plain entry in a TLS broker list, password masked', () => {
    expect(plainEntriesProblem(['amqps://a', 'amqps://b'])).toBeUndefined();
    expect(plainEntriesProblem(['amqps://a', 'amqp://u:secret@b'])).toBe(
      'entry 2 (amqp://u:***@b) is not amqps://: with TLS settings every broker of the list must be amqps://',
    );
  });
});
