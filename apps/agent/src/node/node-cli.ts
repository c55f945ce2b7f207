import type { Command } from 'commander';
import type { CommandContext } from '../cli/command-context';
import { cacheRootOption } from '../cli/shared-options';
import { CONDUCTORS_STALE_MS, staleMsOption } from '../cli/stale-ms-option';
import { runNodeAdd, runNodeLs, runNodeRm } from './node-commands';

/** `icc node add|ls|rm`: the registration markers of a cell's nodes. */
export function addNodeCommands(program: Command, { term, action }: CommandContext): void {
  const nodeCommand = program
    .command('node')
    .description('Register, list and unregister the nodes of a cell (markers <root>/<node>/node.json).');

  nodeCommand
    .command('add')
    .description('Register a node: conductors copy only to and from registered nodes.')
    .argument('[node]', 'node id (a folder under the cache root; created if missing)')
    .addOption(cacheRootOption())
    .option(
      '--existing',
      'register every node folder that already has images/ (a cell from before registration)',
    )
    .option('--by <who>', 'recorded as registeredBy (default: icc <user>@<host>)')
    .option('--json', 'print the markers as JSON')
    .addHelpText(
      'after',
      `
Writes <root>/<node>/node.json atomically ({v, node, registeredAt, registeredBy}); a node already
registered keeps its marker, a broken marker is replaced. The cache root must exist.
Exit codes: 0 registered (or already registered); 2 bad arguments; 1 the marker could not be written.`,
    )
    .action(action((node: string | undefined, options) => runNodeAdd(node, options, term)));

  nodeCommand
    .command('ls')
    .description('List the node folders under the cache root: registration, draining, images and bytes.')
    .addOption(cacheRootOption())
    .option('--json', 'print JSON')
    .option('--limit <n>', 'show at most this many nodes, by id (default 200); says how many more there are')
    .addHelpText('after', '\nRead-only. Exit codes: 0 listed; 2 bad arguments; 1 unreadable cache.')
    .action(action((options) => runNodeLs(options, term)));

  nodeCommand
    .command('rm')
    .description('Unregister a node (remove its marker; its folder and cached images stay).')
    .argument('<node>', 'node id')
    .addOption(cacheRootOption())
    .option('--force', 'unregister it even though it holds cached images')
    .addOption(staleMsOption(`${CONDUCTORS_STALE_MS}, to show stale holders`))
    .addHelpText(
      'after',
      `
Refused while any lock of the node is held (a copy to or from it, the cache cleaner), and while it holds
cached images unless --force. A copy that checked the node's registration just before still finishes.
Exit codes: 0 unregistered; 2 bad arguments, not registered, or images cached without --force;
1 a lock of the node is held (try again later), or the marker could not be removed.`,
    )
    .action(action((node: string, options) => runNodeRm(node, options, term)));
}
