import type { Command } from 'commander';
import { EXIT_CODES_HELP } from '../cli/exit-codes';
import type { CommandContext } from '../cli/command-context';
import { withBrokerOptions } from '../broker/broker-login';
import { cellOption } from '../cli/shared-options';
import { DEFAULT_WAIT_TIMEOUT_S, runCopy } from './copy-command';

/** `icc copy`: one copy request, optionally followed to its result. */
export function addCopyCommand(program: Command, { term, action }: CommandContext): void {
  withBrokerOptions(program.command('copy'))
    .description(
      "Ask the cell's conductors to copy an image into a node's cache (and, with --wait, follow it to the end).",
    )
    .argument('<imageId>', 'the image (a file name in a node cache)')
    .requiredOption('--to <node>', 'destination node')
    .option('--from <node>', 'source node (default: the conductor picks a node holding a verified copy)')
    .option('--sha256 <hex>', 'expected sha256 (64 hex digits); default: the source meta is trusted')
    .option('--size <bytes>', 'expected size in bytes')
    .addOption(cellOption())
    .option('--wait', 'wait for the final result, with a progress bar')
    .option(
      '--timeout <s>',
      `with --wait: give up after this many seconds (exit 4)`,
      String(DEFAULT_WAIT_TIMEOUT_S),
    )
    .option('--json', 'print one JSON object (the result) and no progress bar')
    .option('--request-id <id>', 'request id (default: a fresh icc-<uuid>); re-sending the same id is safe')
    .addHelpText(
      'after',
      `
Without --wait the request is published (confirmed by RabbitMQ) and the command exits 0; its result is
published on the cell's events exchange (result.<status>). With --wait a failed attempt that the
conductor retries is shown as "attempt N failed (REASON), retrying" and waited past.

Examples:
  icc copy ubuntu-24.04.qcow2 --to node-b --cell prod-1 --wait
  icc copy ubuntu-24.04.qcow2 --to node-b --from node-a --sha256 <hex> --wait --json

${EXIT_CODES_HELP}`,
    )
    .action(action((imageId: string, options) => runCopy(imageId, options, term)));
}
