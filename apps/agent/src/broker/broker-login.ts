import { type Command, Option } from 'commander';
import { readTlsFiles, tlsFile } from '@app/credentials';
import {
  type BrokerAuth,
  type BrokerTls,
  BrokerUrlError,
  parseBrokerUrls,
  plainEntriesProblem,
} from '@app/messaging';
import { readFlagFile, secretFlag } from '../cli/credential-flags';
import { UsageError } from '../cli/exit-codes';

export const DEFAULT_AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672';

/** The broker list of --amqp-url / AMQP_URL: one URL or several, comma-separated (see parseBrokerUrls). */
export function validateAmqpUrls(list: string, flag = '--amqp-url'): string[] {
  try {
    return parseBrokerUrls(list);
  } catch (error) {
    if (!(error instanceof BrokerUrlError)) throw error;
    throw new UsageError(flag, list.includes(',') ? error.message : error.problem);
  }
}

/** The broker flags of every command that talks to RabbitMQ; each also read from the conductor's variable. */
export interface BrokerCliOptions {
  amqpUrl?: string;
  amqpUrlFile?: string;
  amqpTlsCaFile?: string;
  amqpTlsCertFile?: string;
  amqpTlsKeyFile?: string;
  amqpTlsServername?: string;
  amqpAuthMechanism?: string;
}

/** Where and how to connect: the checked URL list and the TLS material, read from the files. */
export interface BrokerTarget {
  urls: string[];
  tls: BrokerTls | undefined;
  auth: BrokerAuth;
}

/** The flags of BrokerCliOptions, with the same environment variables as the conductor. */
export function brokerOptions(): Option[] {
  return [
    new Option(
      '--amqp-url <url>',
      `RabbitMQ URL, or several comma-separated (the nodes of a cluster: the first that answers is used, the next on loss); default ${DEFAULT_AMQP_URL}`,
    ).env('AMQP_URL'),
    new Option(
      '--amqp-url-file <file>',
      'read --amqp-url from this file (one line; not readable by every user), so no password is on the command line or in the environment',
    ).env('AMQP_URL_FILE'),
    new Option(
      '--amqp-tls-ca-file <file>',
      "PEM CA(s) the brokers' certificates must chain to (amqps://)",
    ).env('AMQP_TLS_CA_FILE'),
    new Option('--amqp-tls-cert-file <file>', 'PEM client certificate, for brokers that require one').env(
      'AMQP_TLS_CERT_FILE',
    ),
    new Option('--amqp-tls-key-file <file>', 'its unencrypted private key (mode 0600)').env(
      'AMQP_TLS_KEY_FILE',
    ),
    new Option(
      '--amqp-tls-servername <name>',
      "the name the brokers' certificates must carry (default: each URL's host)",
    ).env('AMQP_TLS_SERVERNAME'),
    new Option(
      '--amqp-auth-mechanism <name>',
      'PLAIN (user and password of the URL) or EXTERNAL (the client certificate)',
    )
      .choices(['PLAIN', 'EXTERNAL'])
      .env('AMQP_AUTH_MECHANISM'),
  ];
}

/** Adds --amqp-url and the other broker flags (URL file, TLS, login mechanism) to a command. */
export function withBrokerOptions(command: Command): Command {
  for (const option of brokerOptions()) command.addOption(option);
  return command;
}

/**
 * Checks the broker flags and reads their files, before anything connects: a problem is a UsageError
 * (exit 2) naming the flag and the file, never showing a secret.
 */
export function resolveBrokerTarget(options: BrokerCliOptions): BrokerTarget {
  const list = secretFlag(
    { flag: '--amqp-url', given: options.amqpUrl },
    { flag: '--amqp-url-file', given: options.amqpUrlFile },
  );
  const urls = validateAmqpUrls(
    list ?? DEFAULT_AMQP_URL,
    options.amqpUrlFile ? '--amqp-url-file' : '--amqp-url',
  );
  const auth: BrokerAuth = options.amqpAuthMechanism === 'EXTERNAL' ? 'external' : 'plain';
  const { amqpTlsCaFile: caFile, amqpTlsCertFile: certFile, amqpTlsKeyFile: keyFile } = options;
  if (!certFile !== !keyFile)
    throw new UsageError(
      certFile ? '--amqp-tls-key-file' : '--amqp-tls-cert-file',
      'is needed too: give both or neither',
    );
  if (auth === 'external' && !certFile)
    throw new UsageError(
      '--amqp-auth-mechanism',
      'EXTERNAL needs a client certificate (--amqp-tls-cert-file and --amqp-tls-key-file)',
    );
  if (!caFile && !certFile && !options.amqpTlsServername && auth === 'plain')
    return { urls, tls: undefined, auth };
  const plain = plainEntriesProblem(urls);
  if (plain) throw new UsageError(options.amqpUrlFile ? '--amqp-url-file' : '--amqp-url', plain);
  const files = readFlagFile(() =>
    readTlsFiles({
      ca: tlsFile('--amqp-tls-ca-file', caFile),
      cert: tlsFile('--amqp-tls-cert-file', certFile),
      key: tlsFile('--amqp-tls-key-file', keyFile),
    }),
  );
  return { urls, tls: { ...files, servername: options.amqpTlsServername }, auth };
}
