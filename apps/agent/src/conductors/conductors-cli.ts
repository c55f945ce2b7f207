import { type Command, Option } from 'commander';
import { DEFAULT_CONDUCTOR_DEAD_MS } from '@app/image-store';
import type { CommandContext } from '../cli/command-context';
import { cacheRootOption } from '../cli/shared-options';
import { runConductors } from './conductors-command';

/** `icc conductors`: the cell's conductor records. */
export function addConductorsCommand(program: Command, { term, action }: CommandContext): void {
  program
    .command('conductors')
    .description(
      "List the cell's conductors from their records in the shared folder: release, shared-format versions, host, last beat.",
    )
    .addOption(cacheRootOption())
    .addOption(
      new Option('--dead-ms <ms>', 'a record whose last beat is older than this counts as dead')
        .env('CONDUCTOR_DEAD_MS')
        .default(String(DEFAULT_CONDUCTOR_DEAD_MS)),
    )
    .option('--json', 'print JSON')
    .addHelpText('after', '\nExit codes: 0 shown; 2 bad arguments.')
    .action(action((options) => runConductors(options, term)));
}
