import { CredentialFileError, readSecretText } from '@app/credentials';
import { UsageError } from './exit-codes';

/** Runs a credential file read; its problem becomes a UsageError (exit 2) of the flag that named the file. */
export function readFlagFile<T>(read: () => T): T {
  try {
    return read();
  } catch (error) {
    if (error instanceof CredentialFileError)
      throw new UsageError(error.setting, `${error.file}: ${error.problem}`);
    throw error;
  }
}

/**
 * A secret given either as a flag's value or in the file another flag names (e.g. --token or
 * --token-file): never both, since either could be the stale one.
 */
export function secretFlag(
  value: { flag: string; given: string | undefined },
  file: { flag: string; given: string | undefined },
): string | undefined {
  if (value.given && file.given)
    throw new UsageError(value.flag, `and ${file.flag} are both set (flags or environment): give one`);
  if (file.given) return readFlagFile(() => readSecretText(file.flag, file.given!));
  // An empty value given on purpose (`--amqp-url ""`) is the caller's to refuse, not a silent default.
  return value.given;
}
