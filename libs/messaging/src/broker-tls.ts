import { credentials } from 'amqplib';
import { brokerAddress, maskPassword } from './broker-urls';

/**
 * TLS material for `amqps://` brokers, already read and checked by the program (its settings name the
 * files; this lib sees only bytes). Node verifies the broker's certificate against `ca` and its name
 * against the URL's host (or `servername`) on every handshake; there is no switch to turn either off.
 */
export interface BrokerTls {
  /** PEM CA bundle the broker's certificate must chain to. Unset: Node's built-in CAs. */
  ca?: Buffer;
  /** Client certificate (PEM, leaf first) and its key, for brokers that ask for one (mutual TLS). */
  cert?: Buffer;
  key?: Buffer;
  /** The name the broker's certificate must carry, when it is not the host of the URLs (e.g. IPs). */
  servername?: string;
}

/**
 * How the connection logs in: `plain` sends the URL's user and password; `external` (RabbitMQ's
 * rabbitmq_auth_mechanism_ssl) lets the broker take the user from the client certificate, and the URL
 * carries no password at all.
 */
export type BrokerAuth = 'plain' | 'external';

/** What amqplib's connect() passes to tls.connect (and to its login). */
export function brokerSocketOptions(tls: BrokerTls | undefined, auth: BrokerAuth): Record<string, unknown> {
  return {
    ...(tls?.ca ? { ca: tls.ca } : {}),
    ...(tls?.cert ? { cert: tls.cert } : {}),
    ...(tls?.key ? { key: tls.key } : {}),
    ...(tls?.servername ? { servername: tls.servername } : {}),
    ...(auth === 'external' ? { credentials: credentials.external() } : {}),
  };
}

/**
 * Why a broker list cannot be used with TLS settings: every entry must be `amqps://`, since one plain
 * entry would silently send the password (or, for EXTERNAL, fail) in clear after a fail-over.
 */
export function plainEntriesProblem(urls: readonly string[]): string | undefined {
  const plain = urls.flatMap((url, i) =>
    url.startsWith('amqps://') ? [] : [`entry ${i + 1} (${maskPassword(url)})`],
  );
  if (plain.length === 0) return undefined;
  return `${plain.join(', ')} ${plain.length > 1 ? 'are' : 'is'} not amqps://: with TLS settings every broker of the list must be amqps://`;
}

/** Node's codes for a broker certificate it does not trust. */
const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

/**
 * A TLS handshake failure, said in words an operator acts on (which side refused, what to check), the
 * original message kept. Other errors come back unchanged.
 */
export function describeTlsFailure(error: Error, url: string): Error {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const at = brokerAddress(url);
  let text: string | undefined;
  if (UNTRUSTED.has(code))
    text = `TLS: the certificate of the broker at ${at} is not trusted (${code}: ${error.message}); check the CA file`;
  else if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    text = `TLS: the certificate of the broker at ${at} is not for the name dialled (${error.message}); use a name the certificate carries, or set the TLS server name`;
  else if (/CERTIFICATE_REQUIRED/.test(code))
    text = `TLS: the broker at ${at} requires a client certificate (${code}); set the client certificate and key`;
  else if (/ALERT_(BAD_CERTIFICATE|UNKNOWN_CA|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE)/.test(code))
    text = `TLS: the broker at ${at} refused the handshake or our client certificate (${code}: ${error.message})`;
  if (!text) return error;
  const described = new Error(text, { cause: error });
  (described as NodeJS.ErrnoException).code = code;
  return described;
}
