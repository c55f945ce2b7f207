#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { readReleaseInfo } from '@app/contracts';
import { addCacheCommands } from './cache/cache-cli';
import type { CommandContext } from './cli/command-context';
import { CliError, EXIT_CODES_HELP, ExitCode, type ExitCodeValue } from './cli/exit-codes';
import { processTerminal } from './cli/terminal';
import { addConductorsCommand } from './conductors/conductors-cli';
import { addCopyCommand } from './copy/copy-cli';
import { addDemoCommand } from './demo/demo-cli';
import { addCancelRequestCommand, addJobCommands, addJobSendCommands } from './jobs/jobs-cli';
import { addNodeCommands } from './node/node-cli';
import { addStatusCommand } from './status/status-cli';

/*
 * Only wiring: commander parses, each feature folder's *-cli.ts declares its commands, and the feature
 * code does the work and returns an exit code.
 */

const term = processTerminal;
let exitCode: ExitCodeValue = ExitCode.OK;
const context: CommandContext = {
  term,
  action:
    (run) =>
    async (...args) => {
      exitCode = await run(...args);
    },
};

const program = new Command('icc')
  .description(
    'image-cache-conductor agent: request image copies between compute nodes, inspect conductors and node caches.',
  )
  .version(readReleaseInfo().version, '-V, --version', "print icc's release version")
  .showHelpAfterError('(add --help for usage)')
  .exitOverride()
  .addHelpText('after', `\n${EXIT_CODES_HELP}`);

// In the order `icc --help` lists them.
addCopyCommand(program, context);
addStatusCommand(program, context);
addCacheCommands(program, context);
addNodeCommands(program, context);
addDemoCommand(program, context);
addJobSendCommands(program, context);
addConductorsCommand(program, context);
addJobCommands(program, context);
addCancelRequestCommand(program, context);

async function main(): Promise<void> {
  try {
    await program.parseAsync(process.argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; every parse error (unknown flag, missing argument...) is a usage error.
      exitCode = error.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
    } else if (error instanceof CliError) {
      const command = process.argv.slice(2).find((a) => !a.startsWith('-')) ?? '';
      term.err(
        `icc${command ? ` ${command}` : ''}: ${error.exitCode === ExitCode.USAGE && 'flag' in error ? 'error: ' : ''}${error.message}`,
      );
      if (error.exitCode === ExitCode.USAGE && 'flag' in error) term.err('(add --help for usage)');
      exitCode = error.exitCode;
    } else {
      term.err(
        `icc: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
      );
      exitCode = ExitCode.ERROR;
    }
  }
  process.exitCode = exitCode;
  // Every command closes what it opened; this only guards against a handle someone forgot.
  setTimeout(() => process.exit(exitCode), 2_000).unref();
}

void main();
