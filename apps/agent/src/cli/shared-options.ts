import { Option } from 'commander';

/*
 * The flags several commands share, each defined once (a function, so that every command gets an Option
 * of its own). --stale-ms is declared beside its parser, in stale-ms-option.ts; the broker flags in
 * broker/broker-login.ts.
 */

export const cacheRootOption = () =>
  new Option('--cache-root <dir>', 'the shared cache folder').env('CACHE_ROOT');

export const cellOption = () => new Option('--cell <id>', 'cell id (part of the queue names)').env('CELL_ID');
