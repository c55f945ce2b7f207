import * as fs from 'node:fs';

/**
 * A credential file that cannot be used: names the setting that pointed at it, the file, and why. The
 * message never contains the file's content.
 */
export class CredentialFileError extends Error {
  constructor(
    readonly setting: string,
    readonly file: string,
    readonly problem: string,
  ) {
    super(`${setting}=${file}: ${problem}`);
    this.name = 'CredentialFileError';
  }
}

/** The few fs calls a credential read makes; a seam for specs (e.g. a file that vanishes between calls). */
export interface CredentialFs {
  statSync(file: string): fs.Stats;
  readFileSync(file: string): Buffer;
}

/**
 * Reads a file that holds a secret (a password, a token, a private key), refusing one that other users
 * may read or anyone may replace: like ssh with its keys, a secret left world-readable is refused rather
 * than warned about, since a warning in a log nobody reads protects nothing. Mode 0600 or 0640/0440 (a
 * group such as the service's own, or systemd's credentials folder) is accepted.
 */
export function readSecretBytes(setting: string, file: string, io: CredentialFs = fs): Buffer {
  const stat = statCredential(setting, file, io);
  if ((stat.mode & 0o004) !== 0)
    throw new CredentialFileError(
      setting,
      file,
      `is readable by every user (mode ${modeText(stat.mode)}): a secret must not be; chmod o-rw it (e.g. 0600, or 0640 for a group)`,
    );
  if ((stat.mode & 0o002) !== 0)
    throw new CredentialFileError(
      setting,
      file,
      `is writable by every user (mode ${modeText(stat.mode)}): anyone could replace the secret; chmod o-rw it`,
    );
  return readCredential(setting, file, io);
}

/**
 * A secret given as a one-line value (AMQP_URL_FILE, ADMIN_TOKEN_FILE): the file's text without its
 * trailing line break(s), which editors and `echo` add. An empty file is refused.
 */
export function readSecretText(setting: string, file: string, io: CredentialFs = fs): string {
  const text = readSecretBytes(setting, file, io)
    .toString('utf8')
    .replace(/[\r\n]+$/, '');
  if (text.trim() === '') throw new CredentialFileError(setting, file, 'is empty');
  if (/[\r\n]/.test(text))
    throw new CredentialFileError(setting, file, 'holds more than one line; the value must be one line');
  return text;
}

/** A file that is public by nature (a certificate): exists, is a regular file, is readable. */
export function readPublicFile(setting: string, file: string, io: CredentialFs = fs): Buffer {
  statCredential(setting, file, io);
  return readCredential(setting, file, io);
}

function statCredential(setting: string, file: string, io: CredentialFs): fs.Stats {
  if (file.trim() === '') throw new CredentialFileError(setting, file, 'is empty (a file path is expected)');
  let stat: fs.Stats;
  try {
    stat = io.statSync(file);
  } catch (error) {
    throw new CredentialFileError(setting, file, errnoProblem(error));
  }
  if (!stat.isFile()) throw new CredentialFileError(setting, file, 'is not a regular file');
  return stat;
}

function readCredential(setting: string, file: string, io: CredentialFs): Buffer {
  try {
    return io.readFileSync(file);
  } catch (error) {
    throw new CredentialFileError(setting, file, errnoProblem(error));
  }
}

function errnoProblem(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'does not exist';
  if (code === 'EACCES' || code === 'EPERM') return 'is not readable by this user';
  if (code === 'EISDIR') return 'is not a regular file';
  return `cannot be read (${code ?? (error as Error).message})`;
}

function modeText(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}
