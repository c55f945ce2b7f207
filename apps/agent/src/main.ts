#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { MAX_JOB_NODES, readReleaseInfo } from '@app/contracts';
import { runCacheClean, runCachePin, runCacheUnpin } from './cache/cache-clean';
import { DEFAULT_IMPORT_LOCK_WAIT_S, runCacheImport } from './cache/cache-import';
import { runCacheLs } from './cache/cache-ls';
import { runConductors } from './conductors/conductors-command';
import { DEFAULT_CONDUCTOR_DEAD_MS } from '@app/image-store';
import { BYTES_HELP } from './cli/units';
import { brokerOptions } from './broker/broker-login';
import { CliError, EXIT_CODES_HELP, ExitCode, type ExitCodeValue } from './cli/exit-codes';
import { processTerminal } from './cli/terminal';
import { DEFAULT_WAIT_TIMEOUT_S, runCopy } from './copy/copy-command';
import { DEFAULT_DEMO_TIMEOUT_S, runDemo } from './demo/demo-runner';
import { DEFAULT_BIG_IMAGE_MIB } from './demo/demo-plan';
import { DEFAULT_JOB_TIMEOUT_S, runCancel, runJob } from './jobs/job-commands';
import { runJobStatus } from './jobs/job-status';
import { runNodeAdd, runNodeLs, runNodeRm } from './node/node-commands';
import { DEFAULT_ADMIN_URL } from './status/status-client';
import { runStatus } from './status/status-command';

/*
 * Only wiring: commander parses, the feature folders do the work and return an exit code.
 */

const term = processTerminal;
let exitCode: ExitCodeValue = ExitCode.OK;
/** Runs a command's action, turning its result or error into the process's exit code. */
const action =
  <A extends unknown[]>(run: (...args: A) => Promise<ExitCodeValue>) =>
  async (...args: A): Promise<void> => {
    exitCode = await run(...args);
  };

/** Runs a command that stops cleanly on Ctrl-C (its signal aborts; it reports what it left). */
async function untilSigint(run: (signal: AbortSignal) => Promise<ExitCodeValue>): Promise<ExitCodeValue> {
  const interrupted = new AbortController();
  const onSigint = () => interrupted.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  try {
    return await run(interrupted.signal);
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

/** --amqp-url and the other broker flags (URL file, TLS, login mechanism): see broker/broker-login.ts. */
const withBrokerOptions = (command: Command) => {
  for (const option of brokerOptions()) command.addOption(option);
  return command;
};

const program = new Command('icc')
  .description(
    'image-cache-conductor agent: request image copies between compute nodes, inspect conductors and node caches.',
  )
  .version(readReleaseInfo().version, '-V, --version', "print icc's release version")
  .showHelpAfterError('(add --help for usage)')
  .exitOverride()
  .addHelpText('after', `\n${EXIT_CODES_HELP}`);

withBrokerOptions(program.command('copy'))
  .description(
    "Ask the cell's conductors to copy an image into a node's cache (and, with --wait, follow it to the end).",
  )
  .argument('<imageId>', 'the image (a file name in a node cache)')
  .requiredOption('--to <node>', 'destination node')
  .option('--from <node>', 'source node (default: the conductor picks a node holding a verified copy)')
  .option('--sha256 <hex>', 'expected sha256 (64 hex digits); default: the source meta is trusted')
  .option('--size <bytes>', 'expected size in bytes')
  .addOption(new Option('--cell <id>', 'cell id (part of the queue names)').env('CELL_ID'))
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

const cache = program
  .command('cache')
  .description("Inspect a node's image cache under CACHE_ROOT, evict from it, pin images in it.");
cache
  .command('ls')
  .description("List a node's cached images: size, sha256, age, last use, and current lock holders.")
  .argument('<node>', 'node id (a folder under the cache root)')
  .addOption(new Option('--cache-root <dir>', 'the shared cache folder').env('CACHE_ROOT'))
  .addOption(
    new Option('--stale-ms <ms>', 'flag lock heartbeats older than this as "stale?" (default 20000)').env(
      'LOCK_STALE_MS',
    ),
  )
  .option('--json', 'print JSON')
  .option('--limit <n>', 'show at most this many images, by id (default 200); says how many more there are')
  .addHelpText(
    'after',
    `
Read-only. Lock holders come from <root>/<node>/locks/<imageId>/: the exclusive holder of the newest
unreleased generation (g-<n>/h~<conductor>~<attempt>) and shared readers (r~<conductor>~<attempt>),
with the age of each holder's heartbeat (by this machine's clock: informative only). Partial copies
under tmp/ are listed too.
Exit codes: 0 listed; 2 bad arguments or unknown node; 1 unreadable cache.`,
  )
  .action(action((node: string, options) => runCacheLs(node, options, term)));

const cacheRootOption = () => new Option('--cache-root <dir>', 'the shared cache folder').env('CACHE_ROOT');

cache
  .command('clean')
  .description(
    "Evict images from a node's cache by age and size budget, under the same locks the conductors take.",
  )
  .argument('<node>', 'node id (a folder under the cache root)')
  .addOption(cacheRootOption())
  .option(
    '--max-unused <duration>',
    'delete images last used longer ago than this (e.g. 14d, 36h, 90m; 0: any not in use)',
    '14d',
  )
  .option(
    '--budget <bytes>',
    'while the node holds more than this (e.g. 500G), delete least recently used first',
  )
  .option('--grace <duration>', 'never evict for the budget an image used within this', '1h')
  .option('--dry-run', 'only report what would be deleted (takes no lock, changes nothing)')
  .option('--json', 'print the report as JSON')
  .addOption(
    new Option('--stale-ms <ms>', "the conductors' LOCK_STALE_MS (default 20000)").env('LOCK_STALE_MS'),
  )
  .addHelpText(
    'after',
    `
Runs the cache cleaner of libs/cache-cleaner directly on the shared folder (no conductor needed). For
each candidate it takes the image's EXCLUSIVE lock with a short wait: an image a copy is reading or
writing is skipped ("busy") and left for the next run. Under the lock it checks age, last use and pin
again, then deletes the meta, then the image. Safe beside running conductors: they take the same locks,
and every copy refreshes the last use of the image it reads.
Never deleted: pinned images (icc cache pin; a file <root>/<node>/pinned/<imageId>). Also removed:
orphans (an image file without meta older than --grace, a meta without its image) and partial copies
in tmp/ older than a day. Sizes: ${BYTES_HELP}.
Exit codes: 0 cleaned (busy images skipped is fine); 2 bad arguments or unknown node; 1 an image could
not be deleted (see the report); 130 interrupted (the report so far is printed).

Examples:
  icc cache clean node-7 --cache-root /srv/image-cache --dry-run
  icc cache clean node-7 --max-unused 30d --budget 800G --json`,
  )
  .action(
    action((node: string, options) => untilSigint((signal) => runCacheClean(node, options, term, signal))),
  );

cache
  .command('import')
  .description(
    "Put an image into a node's cache from a local file: under the image's exclusive lock, verified, atomic.",
  )
  .argument('<node>', 'a registered node id (icc node add)')
  .argument('<file>', 'the image file to import (read, never moved)')
  .requiredOption('--image-id <id>', 'the image id in the cache (a safe file name)')
  .option('--sha256 <hex>', 'expected sha256 (64 hex digits): nothing is published if the bytes differ')
  .addOption(cacheRootOption())
  .option('--lock-wait <s>', 'how long to wait for the image lock', String(DEFAULT_IMPORT_LOCK_WAIT_S))
  .option('--json', 'print {status, meta} as JSON and no progress')
  .addOption(
    new Option('--stale-ms <ms>', "the conductors' LOCK_STALE_MS (default 20000)").env('LOCK_STALE_MS'),
  )
  .addHelpText(
    'after',
    `
Takes the EXCLUSIVE lock of <imageId> on <node> (the conductors' own locks: safe beside them), removes
partial copies of dead attempts, copies <file> into <root>/<node>/tmp/ while hashing it, fsyncs, checks
the size and (with --sha256) the checksum, checks the lock again, renames it into images/ and writes
its meta (docs/cache-layout.md). A failed import publishes nothing. With --sha256, an image already
there with that checksum is kept ("already present"); without it an existing image is replaced.
Exit codes: 0 imported or already present; 2 bad arguments, unknown or unregistered node, file missing;
3 the import failed (CHECKSUM_MISMATCH, LOCK_TIMEOUT, NO_SPACE, ...: the reason code is printed);
130 interrupted (nothing published).

Example:
  icc cache import node-7 ./ubuntu-24.04.qcow2 --image-id ubuntu-24.04.qcow2 --sha256 <hex> --cache-root /srv/image-cache`,
  )
  .action(
    action((node: string, file: string, options) =>
      untilSigint((signal) => runCacheImport(node, file, options, term, signal)),
    ),
  );

cache
  .command('pin')
  .description('Pin an image on a node: the cache cleaner never deletes it (it need not be cached yet).')
  .argument('<node>', 'node id')
  .argument('<imageId>', 'image id')
  .addOption(cacheRootOption())
  .addHelpText(
    'after',
    `
Creates <root>/<node>/pinned/<imageId> (an operator may as well create it by hand). Exit codes: 0 pinned;
2 bad arguments or unknown node; 1 the file could not be created.`,
  )
  .action(action((node: string, imageId: string, options) => runCachePin(node, imageId, options, term)));

cache
  .command('unpin')
  .description('Remove the pin of an image on a node.')
  .argument('<node>', 'node id')
  .argument('<imageId>', 'image id')
  .addOption(cacheRootOption())
  .addHelpText('after', '\nExit codes: 0 unpinned or was not pinned; 2 bad arguments or unknown node.')
  .action(action((node: string, imageId: string, options) => runCacheUnpin(node, imageId, options, term)));

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
  .addOption(
    new Option('--stale-ms <ms>', "the conductors' LOCK_STALE_MS, to show stale holders (default 20000)").env(
      'LOCK_STALE_MS',
    ),
  )
  .addHelpText(
    'after',
    `
Refused while any lock of the node is held (a copy to or from it, the cache cleaner), and while it holds
cached images unless --force. A copy that checked the node's registration just before still finishes.
Exit codes: 0 unregistered; 2 bad arguments, not registered, or images cached without --force;
1 a lock of the node is held (try again later), or the marker could not be removed.`,
  )
  .action(action((node: string, options) => runNodeRm(node, options, term)));

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

const cellOption = () => new Option('--cell <id>', 'cell id (part of the queue names)').env('CELL_ID');
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
    .description("Delete an image from a set of nodes, each under the image's exclusive lock (a purge job).")
    .argument('<imageId>', 'the image')
    .option('--force-unpin', 'delete pinned copies too (their pins are removed)'),
)
  .addHelpText(
    'after',
    `${JOB_EXIT_HELP}
Copies reading the image are waited for up to the conductors' LOCK_WAIT_MS, then the node is reported busy.`,
  )
  .action(action((imageId: string, options) => runJob('purge', imageId, options, term)));

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
