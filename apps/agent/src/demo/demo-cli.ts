import type { Command } from 'commander';
import { brokerOptions } from '../broker/broker-login';
import type { CommandContext } from '../cli/command-context';
import { DEFAULT_BIG_IMAGE_MIB } from './demo-plan';
import { DEFAULT_DEMO_TIMEOUT_S, runDemo } from './demo-runner';

/** `icc demo`: a throw-away cell on this machine. */
export function addDemoCommand(program: Command, { term, action }: CommandContext): void {
  program
    .command('demo')
    .description(
      'Run a throw-away cell on this machine: seed images, start a conductor, copy, show progress, verify, clean up.',
    )
    .addOption(brokerOptions()[0]!)
    .option('--keep', 'keep the temp folder (images and the conductor log) for a look afterwards')
    .option('--big-image-mib <n>', 'size of the fanned-out image in MiB', String(DEFAULT_BIG_IMAGE_MIB))
    .option(
      '--timeout <s>',
      'give up waiting for results after this many seconds',
      String(DEFAULT_DEMO_TIMEOUT_S),
    )
    .addHelpText(
      'after',
      `
Needs RabbitMQ (start it with \`rabbitmq-server -detached\`, or set AMQP_URL) and a build (npm run build).
Creates a temp CACHE_ROOT with 6 nodes and 4 images, a fresh cell id, and a conductor child process
(its log goes to the temp folder). Requests a fan-out, a duplicate and two disjoint copies, then checks
the sha256 of every copied image itself. Everything is removed at the end, also on Ctrl-C.
Exit codes: 0 all images verified; 1 a copy failed or an image did not verify; 2 bad arguments;
5 RabbitMQ unreachable; 130 interrupted.`,
    )
    .action(action((options) => runDemo(options, term)));
}
