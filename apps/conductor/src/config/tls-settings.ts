import { type CertificateAndKey, readCertificateAndKey, readTlsFiles, tlsFile } from '@app/credentials';
import { type BrokerAuth, type BrokerTls, plainEntriesProblem } from '@app/messaging';
/**
 * The settings read here, in the form config/conductor-config.ts loads them. Spelled out rather than picked
 * from ConductorConfig because that file checks them with tlsSettingProblems (a type import back would make
 * the two files a circle); the compiler still checks that a ConductorConfig is one, wherever it is passed.
 */
export interface TlsConfig {
  AMQP_URL: readonly string[];
  AMQP_TLS_CA_FILE?: string;
  AMQP_TLS_CERT_FILE?: string;
  AMQP_TLS_KEY_FILE?: string;
  AMQP_TLS_SERVERNAME?: string;
  AMQP_AUTH_MECHANISM: 'PLAIN' | 'EXTERNAL';
  ADMIN_TLS_CERT_FILE?: string;
  ADMIN_TLS_KEY_FILE?: string;
}

/** Settings that only make sense together, checked before any file is read. */
export function tlsSettingProblems(c: TlsConfig): string[] {
  const problems: string[] = [];
  const pair = (cert: keyof TlsConfig, key: keyof TlsConfig) => {
    if ((c[cert] === undefined) !== (c[key] === undefined))
      problems.push(
        `${cert} and ${key}: set both or neither (${c[cert] === undefined ? cert : key} is unset)`,
      );
  };
  pair('AMQP_TLS_CERT_FILE', 'AMQP_TLS_KEY_FILE');
  pair('ADMIN_TLS_CERT_FILE', 'ADMIN_TLS_KEY_FILE');
  if (c.AMQP_AUTH_MECHANISM === 'EXTERNAL' && c.AMQP_TLS_CERT_FILE === undefined)
    problems.push(
      'AMQP_AUTH_MECHANISM=EXTERNAL: needs a client certificate (AMQP_TLS_CERT_FILE, AMQP_TLS_KEY_FILE)',
    );
  const brokerTls =
    c.AMQP_TLS_CA_FILE ??
    c.AMQP_TLS_CERT_FILE ??
    c.AMQP_TLS_SERVERNAME ??
    (c.AMQP_AUTH_MECHANISM === 'EXTERNAL' || undefined);
  const plain = brokerTls === undefined ? undefined : plainEntriesProblem(c.AMQP_URL);
  if (plain) problems.push(`AMQP_URL: ${plain}`);
  return problems;
}

/** The broker TLS material and login of the settings; throws CredentialFileError for a bad file. */
export function loadBrokerTls(c: TlsConfig): { tls: BrokerTls | undefined; auth: BrokerAuth } {
  const auth: BrokerAuth = c.AMQP_AUTH_MECHANISM === 'EXTERNAL' ? 'external' : 'plain';
  if (!c.AMQP_TLS_CA_FILE && !c.AMQP_TLS_CERT_FILE && !c.AMQP_TLS_SERVERNAME) return { tls: undefined, auth };
  const files = readTlsFiles({
    ca: tlsFile('AMQP_TLS_CA_FILE', c.AMQP_TLS_CA_FILE),
    cert: tlsFile('AMQP_TLS_CERT_FILE', c.AMQP_TLS_CERT_FILE),
    key: tlsFile('AMQP_TLS_KEY_FILE', c.AMQP_TLS_KEY_FILE),
  });
  return { tls: { ...files, servername: c.AMQP_TLS_SERVERNAME }, auth };
}

/** The admin endpoint's certificate and key (read at start and on every SIGHUP); undefined: plain HTTP. */
export function loadAdminTls(c: TlsConfig): CertificateAndKey | undefined {
  if (!c.ADMIN_TLS_CERT_FILE || !c.ADMIN_TLS_KEY_FILE) return undefined;
  return readCertificateAndKey(
    { setting: 'ADMIN_TLS_CERT_FILE', file: c.ADMIN_TLS_CERT_FILE },
    { setting: 'ADMIN_TLS_KEY_FILE', file: c.ADMIN_TLS_KEY_FILE },
  );
}
