import type { Command } from 'commander';
import { MAX_JOB_NODES } from '@app/contracts';
import type { CommandContext } from '../cli/command-context';
import { withBrokerOptions } from '../broker/broker-login';
import { cacheRootOption, cellOption } from '../cli/shared-options';
import { DEFAULT_JOB_TIMEOUT_S, runCancel, runJob } from './job-commands';
import { runJobStatus } from './job-status';

/** The flags of a command that sends a job to a set of nodes (precache, purge). */
const jobNodeOptions = (command: Command) =>
  withBrokerOptions(command)
    .option('--nodes <list>', `comma-separated node ids (at most ${MAX_JOB_NODES})`)
    .option('--all', 'every registered node of the cell')
    .option(
      '--percent <p>',
      'with --all: this share of the registered nodes (0 < p <= 100), chosen by the job id',
    )
    .option('--job-id <id>', 'job id (default: a fresh <type>-<uuid>); sending the same job again is safe')
    .addOption(cellOption())
    .option('--wait', 'follow the job: one line per node, then the table of outcomes')
    .option(
      '--timeout <s>',
      'give up waiting after this many seconds (exit 4)',
      String(DEFAULT_JOB_TIMEOUT_S),
    )
    .option('--json', 'print the final job event as JSON');

const JOB_EXIT_HELP = `
Without --wait the command exits 0 once a conductor accepted the job (its record is durable) and prints that
acceptance in one line (icc job status shows the nodes). With --wait
it exits 0 when every node succeeded, 3 when a node failed, was busy, pinned, skipped or cancelled (the
table says which), 4 on --timeout (the job goes on: icc job status <id>), 2 on bad arguments (unknown
flag values, an empty --nodes, more than ${MAX_JOB_NODES} nodes, --percent out of range), 5 broker unreachable.`;

/** `icc precache` and `icc purge`: send a job to a set of nodes. */
export function addJobSendCommands(program: Command, { term, action }: CommandContext): void {
  jobNodeOptions(
    program
      .command('precache')
      .description('Bring an image onto a set of nodes (a pre-cache job), with per-node results.')
      .argument('<imageId>', 'the image')
      .option('--sha256 <hex>', 'expected sha256 of every copy'),
  )
    .addHelpText(
      'after',
      `${JOB_EXIT_HELP}
Example:
  icc precache ubuntu-24.04.qcow2 --all --percent 25 --cell prod-1 --wait`,
    )
    .action(action((imageId: string, options) => runJob('precache', imageId, options, term)));

  jobNodeOptions(
    program
      .command('purge')
      .description(
        "Delete an image from a set of nodes, each under the image's exclusive lock (a purge job).",
      )
      .argument('<imageId>', 'the image')
      .option('--force-unpin', 'delete pinned copies too (their pins are removed)'),
  )
    .addHelpText(
      'after',
      `${JOB_EXIT_HELP}
Copies reading the image are waited for up to the conductors' LOCK_WAIT_MS, then the node is reported busy.`,
    )
    .action(action((imageId: string, options) => runJob('purge', imageId, options, term)));
}

/** `icc job status|cancel`: follow and cancel a job already sent. */
export function addJobCommands(program: Command, { term, action }: CommandContext): void {
  const jobCommand = program.command('job').description('Follow and cancel pre-cache and purge jobs.');

  jobCommand
    .command('status')
    .description("Show a job's nodes and outcomes (read from the shared folder: works from any host).")
    .argument('<jobId>', 'job id')
    .addOption(cacheRootOption())
    .option('--json', 'print JSON')
    .option('--limit <n>', 'show at most this many nodes, by id (default 200); the summary counts them all')
    .addHelpText('after', '\nExit codes: 0 shown; 2 bad arguments; 3 no such job.')
    .action(action((jobId: string, options) => runJobStatus(jobId, options, term)));

  withBrokerOptions(jobCommand.command('cancel'))
    .description('Cancel a job: its queued copies are skipped, running ones aborted.')
    .argument('<jobId>', 'job id')
    .addOption(cellOption())
    .option('--json', 'print the answer as JSON')
    .addHelpText(
      'after',
      '\nExit codes: 0 cancelled (or already finished); 3 no such job; 4 no answer; 5 broker unreachable.',
    )
    .action(action((jobId: string, options) => runCancel({ jobId }, options, term)));
}

/** `icc cancel <requestId>`: cancels one copy request (a job is cancelled with `icc job cancel`). */
export function addCancelRequestCommand(program: Command, { term, action }: CommandContext): void {
  withBrokerOptions(program.command('cancel'))
    .description(
      'Cancel a copy request by its request id: queued, it is answered CANCELLED when taken; running, it is aborted.',
    )
    .argument('<requestId>', 'the request id')
    .addOption(cellOption())
    .option('--json', 'print the answer as JSON')
    .addHelpText(
      'after',
      '\nExit codes: 0 cancelled, recorded or already-final (the request had its final answer, which stands); 4 no answer; 5 broker unreachable.',
    )
    .action(action((requestId: string, options) => runCancel({ requestId }, options, term)));
}
