import type { Command } from 'commander';
import { DEFAULT_CLEANER_POLICY } from '@app/cache-cleaner';
import { type CommandContext, untilSigint } from '../cli/command-context';
import { cacheRootOption } from '../cli/shared-options';
import { CONDUCTORS_STALE_MS, staleMsOption } from '../cli/stale-ms-option';
import { BYTES_HELP, formatDuration } from '../cli/units';
import { runCacheClean, runCachePin, runCacheUnpin } from './cache-clean';
import { DEFAULT_IMPORT_LOCK_WAIT_S, runCacheImport } from './cache-import';
import { runCacheLs } from './cache-ls';

/** `icc cache ls|clean|import|pin|unpin`: one node's image cache, read and changed under the conductors' locks. */
export function addCacheCommands(program: Command, { term, action }: CommandContext): void {
  const cache = program
    .command('cache')
    .description("Inspect a node's image cache under CACHE_ROOT, evict from it, pin images in it.");

  cache
    .command('ls')
    .description("List a node's cached images: size, sha256, age, last use, and current lock holders.")
    .argument('<node>', 'node id (a folder under the cache root)')
    .addOption(cacheRootOption())
    .addOption(staleMsOption('flag lock heartbeats older than this as "stale?"'))
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
      formatDuration(DEFAULT_CLEANER_POLICY.maxUnusedMs),
    )
    .option(
      '--budget <bytes>',
      'while the node holds more than this (e.g. 500G), delete least recently used first',
    )
    .option(
      '--grace <duration>',
      'never evict for the budget an image used within this',
      formatDuration(DEFAULT_CLEANER_POLICY.graceMs),
    )
    .option('--dry-run', 'only report what would be deleted (takes no lock, changes nothing)')
    .option('--json', 'print the report as JSON')
    .addOption(staleMsOption(CONDUCTORS_STALE_MS))
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
    .addOption(staleMsOption(CONDUCTORS_STALE_MS))
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
}
