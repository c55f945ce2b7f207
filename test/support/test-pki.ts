import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A certificate and its key, as files (key mode 0600). */
export interface IssuedPair {
  cert: string;
  key: string;
}

export interface IssueOptions {
  /** Subject CN; for a client certificate, the user RabbitMQ's EXTERNAL login maps it to. */
  commonName: string;
  /** subjectAltName entries: IP addresses and DNS names (server certificates). */
  ips?: string[];
  dns?: string[];
  /** serverAuth (default) or clientAuth. */
  usage?: 'server' | 'client';
  days?: number;
}

/**
 * A certificate authority made by a test with openssl, in a folder of the test's own: `ca.pem` (its
 * certificate, what clients trust) and the key it signs with. `issue()` makes a server or client
 * certificate signed by it. Two TestCa's are two unrelated CAs (the "wrong CA" of a test).
 */
export class TestCa {
  private serial = 1;

  private constructor(
    readonly dir: string,
    readonly name: string,
    /** The CA certificate (PEM). */
    readonly cert: string,
    private readonly key: string,
  ) {}

  static async create(dir: string, name = 'icc-test-ca'): Promise<TestCa> {
    await fsp.mkdir(dir, { recursive: true });
    const cert = path.join(dir, `${name}.pem`);
    const key = path.join(dir, `${name}.key`);
    await openssl([
      'req',
      '-x509',
      ...EC_KEY,
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    await fsp.chmod(key, 0o600);
    return new TestCa(dir, name, cert, key);
  }

  /** A certificate signed by this CA; files `<name>-<cn>-<n>.{pem,key}` beside the CA's. */
  async issue(options: IssueOptions): Promise<IssuedPair> {
    const base = path.join(this.dir, `${this.name}-${options.commonName}-${this.serial++}`);
    const [cert, key, csr, ext] = ['.pem', '.key', '.csr', '.ext'].map((s) => base + s) as [
      string,
      string,
      string,
      string,
    ];
    await openssl([
      'req',
      ...EC_KEY,
      '-nodes',
      '-keyout',
      key,
      '-out',
      csr,
      '-subj',
      `/CN=${options.commonName}`,
    ]);
    await fsp.chmod(key, 0o600);
    const alt = [
      ...(options.ips ?? []).map((ip) => `IP:${ip}`),
      ...(options.dns ?? []).map((d) => `DNS:${d}`),
    ];
    await fsp.writeFile(
      ext,
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage=${options.usage === 'client' ? 'clientAuth' : 'serverAuth'}`,
        ...(alt.length > 0 ? [`subjectAltName=${alt.join(',')}`] : []),
        '',
      ].join('\n'),
    );
    await openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      this.cert,
      '-CAkey',
      this.key,
      '-set_serial',
      String(Date.now() * 100 + this.serial),
      '-out',
      cert,
      '-days',
      String(options.days ?? 2),
      '-extfile',
      ext,
    ]);
    return { cert, key };
  }
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 });
  } catch (error) {
    throw new Error(
      `openssl ${args.slice(0, 2).join(' ')} failed (is openssl installed? apt-get install openssl): ${(error as Error).message}`,
    );
  }
}
