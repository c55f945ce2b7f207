import { type KeyObject, X509Certificate, createPrivateKey } from 'node:crypto';
import * as fs from 'node:fs';
import { type CredentialFs, CredentialFileError, readPublicFile, readSecretBytes } from './credential-file';

/** Where a TLS file comes from: the setting that names it (for messages) and the path. */
export interface TlsFileSetting {
  setting: string;
  file: string;
}

/** A certificate (chain) and its private key, checked to belong together. */
export interface CertificateAndKey {
  /** PEM, leaf first, as read. */
  cert: Buffer;
  /** PEM, as read. */
  key: Buffer;
  /** The leaf's subject and expiry, for a log line (never the key). */
  subject: string;
  validTo: string;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Every certificate of a PEM file, parsed; refuses a file with none or with a block that does not parse. */
function parseCertificates({ setting, file }: TlsFileSetting, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0)
    throw new CredentialFileError(
      setting,
      file,
      'is not a certificate: it holds no PEM "BEGIN CERTIFICATE" block',
    );
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new CredentialFileError(
        setting,
        file,
        `is not a certificate: PEM block ${i + 1} does not parse (${(error as Error).message})`,
      );
    }
  });
}

/** A CA bundle (one or more PEM certificates) that the peer's certificate must chain to. */
export function readCaBundle(source: TlsFileSetting, io: CredentialFs = fs): Buffer {
  const pem = readPublicFile(source.setting, source.file, io);
  parseCertificates(source, pem);
  return pem;
}

/**
 * A certificate file (leaf first, chain after it) and its private key: each must parse, the key must not
 * be readable by every user (readSecretBytes), must not need a passphrase, and must be the leaf's; an
 * expired leaf is refused at start rather than at the first handshake.
 */
export function readCertificateAndKey(
  certSource: TlsFileSetting,
  keySource: TlsFileSetting,
  io: CredentialFs = fs,
  now: Date = new Date(),
): CertificateAndKey {
  const cert = readPublicFile(certSource.setting, certSource.file, io);
  const [leaf] = parseCertificates(certSource, cert);
  const key = readSecretBytes(keySource.setting, keySource.file, io);
  const keyObject = parsePrivateKey(keySource, key);
  if (!leaf!.checkPrivateKey(keyObject))
    throw new CredentialFileError(
      keySource.setting,
      keySource.file,
      `does not match the certificate of ${certSource.setting}=${certSource.file} (subject ${leaf!.subject.replace(/\n/g, ', ')})`,
    );
  if (new Date(leaf!.validTo).getTime() < now.getTime())
    throw new CredentialFileError(certSource.setting, certSource.file, `expired on ${leaf!.validTo}`);
  return { cert, key, subject: leaf!.subject.replace(/\n/g, ', '), validTo: leaf!.validTo };
}

function parsePrivateKey({ setting, file }: TlsFileSetting, key: Buffer): KeyObject {
  try {
    return createPrivateKey({ key });
  } catch (error) {
    const code = (error as { code?: string }).code;
    // OpenSSL 3 reports a key that needs a passphrase as an interrupted prompt.
    const encrypted =
      /ENCRYPTED/.test(key.toString('latin1')) ||
      code === 'ERR_MISSING_PASSPHRASE' ||
      code === 'ERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED';
    if (encrypted)
      throw new CredentialFileError(
        setting,
        file,
        'is an encrypted private key: give it unencrypted, protected by its file mode (0600)',
      );
    throw new CredentialFileError(setting, file, 'is not a private key (PEM or DER expected)');
  }
}

/** The optional TLS files of one connection: a CA bundle and a certificate with its key. */
export interface TlsFileSettings {
  ca?: TlsFileSetting;
  cert?: TlsFileSetting;
  key?: TlsFileSetting;
}

/**
 * Reads and checks whichever of the files are given (readCaBundle, readCertificateAndKey); a certificate
 * needs its key and the other way round, which callers check first with their own names.
 */
export function readTlsFiles(
  files: TlsFileSettings,
  io: CredentialFs = fs,
): { ca?: Buffer; cert?: Buffer; key?: Buffer } {
  const ca = files.ca ? readCaBundle(files.ca, io) : undefined;
  const pair = files.cert && files.key ? readCertificateAndKey(files.cert, files.key, io) : undefined;
  return { ca, cert: pair?.cert, key: pair?.key };
}

/** `{ setting, file }` when the file is set, for TlsFileSettings. */
export function tlsFile(setting: string, file: string | undefined): TlsFileSetting | undefined {
  return file ? { setting, file } : undefined;
}
