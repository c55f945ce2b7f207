import { type Command, Option } from 'commander';
import { DEFAULT_LOCK_TIMINGS } from '@app/locking';
import { brokerOptions } from '../broker/broker-login';

/*
 * The flags several commands share, each defined once: a fresh Option per use, since commander keeps
 * per-command state on it.
 */

export const cacheRootOption = () =>
  new Option('--cache-root <dir>', 'the shared cache folder').env('CACHE_ROOT');

export const cellOption = () => new Option('--cell <id>', 'cell id (part of the queue names)').env('CELL_ID');

/**
 * `--stale-ms` (read by cli/stale-ms-option.ts): `purpose` says what this command does with it; the
 * default shown is the lock library's, the one parseStaleMs falls back to.
 */
export const staleMsOption = (purpose: string) =>
  new Option('--stale-ms <ms>', `${purpose} (default ${DEFAULT_LOCK_TIMINGS.staleMs})`).env('LOCK_STALE_MS');

/** The purpose of `--stale-ms` for a command that takes the conductors' locks itself. */
export const CONDUCTORS_STALE_MS = "the conductors' LOCK_STALE_MS";

/** --amqp-url and the other broker flags (URL file, TLS, login mechanism): see broker/broker-login.ts. */
export function withBrokerOptions(command: Command): Command {
  for (const option of brokerOptions()) command.addOption(option);
  return command;
}
