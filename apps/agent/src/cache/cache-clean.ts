import * as path from 'node:path';
import {
  CacheCleaner,
  type CleanReport,
  DEFAULT_CLEANER_POLICY,
  type CleanerLogger,
  summarizeCleanReport,
} from '@app/cache-cleaner';
import { imageIdSchema, nodeIdSchema } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { MIN_STALE_MS, NodeLockManager } from '@app/locking';
import { ExitCode, type ExitCodeValue, UsageError } from '../cli/exit-codes';
import { formatAge, formatBytes, formatMs } from '../cli/format';
import { table } from '../cli/tables';
import type { Terminal } from '../cli/terminal';
import { BYTES_HELP, DURATION_HELP, parseBytes, parseDuration } from '../cli/units';
import { parseStaleMs } from '../cli/stale-ms-option';
import { cacheTarget, cliHolderId, parseId, requireNode, requireRoot } from './cache-args';

export interface CacheCleanOptions {
  cacheRoot?: string;
  maxUnused?: string;
  budget?: string;
  grace?: string;
  dryRun?: boolean;
  json?: boolean;
  /** The conductors' LOCK_STALE_MS: this process takes locks beside them and must judge staleness alike. */
  staleMs?: string;
}

export interface CachePinOptions {
  cacheRoot?: string;
}

/** `icc cache clean <node>`: the CacheCleaner on the shared folder, with the conductors' own locks. */
export async function runCacheClean(
  node: string,
  options: CacheCleanOptions,
  term: Terminal,
  signal?: AbortSignal,
): Promise<ExitCodeValue> {
  const { root, nodeId } = cacheTarget(node, options.cacheRoot);
  const policy = {
    maxUnusedMs:
      parseFlag(options.maxUnused, '--max-unused', parseDuration, DURATION_HELP) ??
      DEFAULT_CLEANER_POLICY.maxUnusedMs,
    graceMs:
      parseFlag(options.grace, '--grace', parseDuration, DURATION_HELP) ?? DEFAULT_CLEANER_POLICY.graceMs,
    budgetBytes: parseFlag(options.budget, '--budget', parseBytes, BYTES_HELP) || undefined,
  };
  const staleMs = parseStaleMs(options.staleMs, MIN_STALE_MS);
  const store = new ImageStore({ root });
  await requireNode(store, root, nodeId);
  const locks = new NodeLockManager({
    root,
    conductorId: cliHolderId(),
    timings: { staleMs },
    requireNodeFolder: true,
  });
  const cleaner = new CacheCleaner(store, locks, policy, cliLogger(term));
  let report: CleanReport;
  try {
    report = await cleaner.clean(nodeId, { dryRun: options.dryRun === true, signal });
  } finally {
    await locks.releaseAll();
  }
  term.out(options.json ? JSON.stringify(report) : renderCleanReport(report));
  if (report.aborted) return ExitCode.INTERRUPTED;
  return report.errors.length > 0 ? ExitCode.ERROR : ExitCode.OK;
}

/** Validates `<node> <imageId>` of pin/unpin and opens the node's cache (which must exist). */
async function openPinTarget(node: string, imageId: string, options: CachePinOptions) {
  const root = requireRoot(options.cacheRoot);
  const nodeId = parseId(nodeIdSchema, node, '<node>');
  const id = parseId(imageIdSchema, imageId, '<imageId>');
  const store = new ImageStore({ root });
  await requireNode(store, root, nodeId);
  return { store, nodeId, id };
}

/** `icc cache pin <node> <imageId>`: the cache cleaner never deletes a pinned image. */
export async function runCachePin(
  node: string,
  imageId: string,
  options: CachePinOptions,
  term: Terminal,
): Promise<ExitCodeValue> {
  const { store, nodeId, id } = await openPinTarget(node, imageId, options);
  await store.markers.pin(nodeId, id);
  const cached = (await store.copies.verifiedImage(nodeId, id)) !== undefined;
  term.out(
    `pinned ${id} on ${nodeId} (${path.join(store.nodeLayout(nodeId).pinned, id)}): the cache cleaner will not delete it${cached ? '' : ' (not in the cache yet: the pin holds once it arrives)'}`,
  );
  return ExitCode.OK;
}

/** `icc cache unpin <node> <imageId>`. */
export async function runCacheUnpin(
  node: string,
  imageId: string,
  options: CachePinOptions,
  term: Terminal,
): Promise<ExitCodeValue> {
  const { store, nodeId, id } = await openPinTarget(node, imageId, options);
  const removed = await store.markers.unpin(nodeId, id);
  term.out(removed ? `unpinned ${id} on ${nodeId}` : `${id} was not pinned on ${nodeId}`);
  return ExitCode.OK;
}

export function renderCleanReport(report: CleanReport, now = Date.now()): string {
  const parts = [`${summarizeCleanReport(report)} (in ${formatMs(report.durationMs)})`];
  if (report.deleted.length > 0)
    parts.push(
      table(
        ['image', 'size', 'why', 'last used'],
        report.deleted.map((d) => [d.imageId, formatBytes(d.size), d.why, formatAge(d.lastUsedAt, now)]),
      ),
    );
  const list = (label: string, ids: string[]) => {
    if (ids.length > 0) parts.push(`${label}: ${ids.join(', ')}`);
  };
  list('kept, pinned', report.keptPinned);
  list('skipped, busy (a copy holds its lock; next run)', report.skippedBusy);
  list('kept, used or re-published meanwhile', report.keptChanged);
  for (const e of report.errors) parts.push(`error on ${e.imageId}: ${e.error}`);
  const budget = report.policy.budgetBytes;
  parts.push(
    `policy: unused for more than ${formatMs(report.policy.maxUnusedMs)}${budget ? `, budget ${formatBytes(budget)} (grace ${formatMs(report.policy.graceMs)})` : ', no budget'}; now ${formatBytes(report.bytesAfter)} in the cache${report.dryRun ? ' after the deletions (dry run: nothing was deleted)' : ''}`,
  );
  return parts.join('\n');
}

function parseFlag(
  raw: string | undefined,
  flag: string,
  parse: (text: string) => number | undefined,
  help: string,
): number | undefined {
  if (raw === undefined) return undefined;
  const value = parse(raw);
  if (value === undefined) throw new UsageError(flag, `must be ${help} (got ${JSON.stringify(raw)})`);
  return value;
}

/** Deletions are in the report; warnings go to stderr, the rest only with ICC_DEBUG. */
function cliLogger(term: Terminal): CleanerLogger {
  const debug = Boolean(process.env.ICC_DEBUG);
  return {
    info: (fields, message) => {
      if (debug) term.err(`[icc] ${message} ${JSON.stringify(fields)}`);
    },
    warn: (fields, message) => term.err(`icc: warning: ${message} ${JSON.stringify(fields)}`),
    debug: (fields, message) => {
      if (debug) term.err(`[icc debug] ${message} ${JSON.stringify(fields)}`);
    },
  };
}
