import { type Command, Option } from 'commander';
import type { CommandContext } from '../cli/command-context';
import { DEFAULT_ADMIN_URL } from './status-client';
import { runStatus } from './status-command';

/** `icc status`: a conductor's admin status as tables. */
export function addStatusCommand(program: Command, { term, action }: CommandContext): void {
  program
    .command('status')
    .description("Show a conductor's status (GET <url>/status of its admin endpoint) as tables.")
    .addOption(
      new Option('--url <url>', "the conductor's admin URL").env('ADMIN_URL').default(DEFAULT_ADMIN_URL),
    )
    .addOption(new Option('--token <token>', 'admin bearer token').env('ADMIN_TOKEN'))
    .addOption(
      new Option(
        '--token-file <file>',
        'read --token from this file (one line; not readable by every user), so the token is not on the command line or in the environment',
      ).env('ADMIN_TOKEN_FILE'),
    )
    .option('--json', 'print the raw JSON')
    .addHelpText(
      'after',
      `
An https:// --url is checked against the system's CAs; for a private CA set NODE_EXTRA_CA_CERTS=<ca.pem>.
Exit codes: 0 shown; 2 token missing or wrong (HTTP 401/403), bad --url, or a bad --token-file; 5 admin endpoint unreachable;
1 any other HTTP error.`,
    )
    .action(action((options) => runStatus(options, term)));
}
