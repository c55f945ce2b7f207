import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { nodeIdSchema } from '@app/contracts';
import { type ImageMeta, ImageStore, parseTmpName } from '@app/image-store';
import { DEFAULT_LOCK_TIMINGS, type LockEntryView, inspectLocks } from '@app/locking';
import { ExitCode, type ExitCodeValue, UsageError } from '../cli/exit-codes';
import { formatAge, formatBytes, formatMs, shortSha } from '../cli/format';
import { table } from '../cli/tables';
import { cutNotice, parseLimit } from '../cli/listing-limit';
import type { Terminal } from '../cli/terminal';
import { parseStaleMs } from '../cli/stale-ms-option';

export interface CacheLsOptions {
  cacheRoot?: string;
  json?: boolean;
  /** The conductors' LOCK_STALE_MS, to flag heartbeats older than that. */
  staleMs?: string;
  /** --limit: images shown (DEFAULT_LISTING_LIMIT), by image id; the rest are counted. */
  limit?: string;
}

export interface CacheListing {
  node: string;
  /** Whether conductors copy to and from this node (icc node add); `problem` says why not. */
  registered: boolean;
  problem?: string;
  images: (ImageMeta & { locks: LockEntryView[] })[];
  /** Verified images on the node: more than `images` when the listing was cut (--limit). */
  imagesTotal: number;
  /** Entries no conductor uses: a broken or missing meta file, or an image file that does not match it. */
  invalid: { imageId: string; bytes: number; problem: string }[];
  /** Locks on images this node does not (yet) hold, e.g. one being copied in. */
  otherLocks: { imageId: string; locks: LockEntryView[] }[];
  partialCopies: { imageId: string; attempt: string; bytes: number; modifiedAt: Date }[];
  /** Files a network mount hid in images/ (`.fuse_hidden*`, `.nfs*`): space no image accounts for. */
  litter: { name: string; bytes: number; hiddenAt: Date }[];
}

/**
 * Reads a node's verified images, current lock holders (libs/locking's inspectLocks: the exclusive holder
 * of each key's newest unreleased generation, and shared readers) and partial copies. Read-only.
 */
export async function listCache(
  root: string,
  node: string,
  staleMs = DEFAULT_LOCK_TIMINGS.staleMs,
  limit = Infinity,
): Promise<CacheListing> {
  // Broken files are shown in the listing itself: no warning lines beside it.
  const store = new ImageStore({ root, onWarning: () => undefined });
  const layout = store.nodeLayout(node);
  const [entries, litter, inspection, registration] = await Promise.all([
    store.entries.listEntries(node),
    store.entries.listLitter(node),
    inspectLocks(root, { node, staleMs }),
    store.markers.nodeRegistration(node),
  ]);
  const images = entries.flatMap((e) => (e.meta ? [e.meta] : []));
  const invalid = entries.flatMap((e) =>
    e.meta ? [] : [{ imageId: e.imageId, bytes: e.bytes, problem: e.problem ?? 'not verified' }],
  );
  const locks = new Map<string, LockEntryView[]>();
  for (const entry of inspection.entries)
    locks.set(entry.imageId, [...(locks.get(entry.imageId) ?? []), entry]);
  const partialCopies: CacheListing['partialCopies'] = [];
  for (const name of await fsp.readdir(layout.tmp).catch(() => [] as string[])) {
    const parsed = parseTmpName(name);
    if (!parsed) continue;
    const stat = await fsp.stat(path.join(layout.tmp, name)).catch(() => undefined);
    if (stat)
      partialCopies.push({
        imageId: parsed.imageId,
        attempt: parsed.tag,
        bytes: stat.size,
        modifiedAt: stat.mtime,
      });
  }
  const ids = new Set(images.map((i) => i.imageId));
  return {
    node,
    registered: registration.registered,
    ...(registration.problem === undefined ? {} : { problem: registration.problem }),
    images: images.slice(0, limit).map((meta) => ({ ...meta, locks: locks.get(meta.imageId) ?? [] })),
    imagesTotal: images.length,
    otherLocks: [...locks]
      .filter(([imageId]) => !ids.has(imageId))
      .map(([imageId, l]) => ({ imageId, locks: l })),
    invalid,
    partialCopies,
    litter: litter.map((l) => ({ name: l.name, bytes: l.bytes, hiddenAt: new Date(l.changedMs) })),
  };
}

export function describeHolders(entries: readonly LockEntryView[]): string {
  if (entries.length === 0) return '-';
  return entries
    .map((e) => {
      const who = e.holder ? `${e.holder.conductorId}/${e.holder.attemptId}` : '(holder starting)';
      const gen = e.generation !== undefined ? ` g-${e.generation}` : '';
      const stale = e.liveness === 'stale' ? ', stale?' : '';
      return `${e.mode} ${who}${gen} (beat ${formatMs(Math.max(0, e.ageMs))} ago${stale})`;
    })
    .join('\n');
}

const cutNoticeLine = (listing: CacheListing) => {
  const notice = cutNotice(listing.images.length, listing.imagesTotal, 'images');
  return notice && `\n${notice}`;
};

export function renderCacheListing(listing: CacheListing, now = Date.now()): string {
  const parts: string[] = [];
  if (!listing.registered)
    parts.push(
      `node ${listing.node} is not registered (${listing.problem}): conductors neither copy to it nor read from it (icc node add)`,
    );
  if (listing.images.length === 0) parts.push(`node ${listing.node}: no cached images`);
  else
    parts.push(
      table(
        ['image', 'size', 'sha256', 'age', 'last used', 'lock holders'],
        listing.images.map((i) => [
          i.imageId,
          formatBytes(i.size),
          shortSha(i.sha256),
          formatAge(i.createdAt, now),
          formatAge(i.lastUsedAt, now),
          describeHolders(i.locks),
        ]),
      ) + (cutNoticeLine(listing) ?? ''),
    );
  if (listing.invalid.length > 0)
    parts.push(
      `Invalid entries (no conductor uses them; icc cache clean removes them as orphans):\n${table(
        ['image', 'bytes on disk', 'invalid because'],
        listing.invalid.map((i) => [i.imageId, formatBytes(i.bytes), i.problem]),
      )}`,
    );
  if (listing.otherLocks.length > 0)
    parts.push(
      `Locks on images not (yet) in this cache:\n${table(
        ['image', 'lock holders'],
        listing.otherLocks.map((l) => [l.imageId, describeHolders(l.locks)]),
      )}`,
    );
  if (listing.partialCopies.length > 0)
    parts.push(
      `Partial copies (in progress, or left by a dead attempt):\n${table(
        ['image', 'attempt', 'bytes so far', 'modified'],
        listing.partialCopies.map((p) => [
          p.imageId,
          p.attempt,
          formatBytes(p.bytes),
          formatAge(p.modifiedAt, now),
        ]),
      )}`,
    );
  if (listing.litter.length > 0)
    parts.push(
      `Hidden files a network mount left in images/ (a file replaced or deleted while open; icc cache clean removes them once older than the grace time):\n${table(
        ['file', 'bytes', 'hidden'],
        listing.litter.map((l) => [l.name, formatBytes(l.bytes), formatAge(l.hiddenAt, now)]),
      )}`,
    );
  return parts.join('\n\n');
}

/** `icc cache ls <node>`. */
export async function runCacheLs(
  node: string,
  options: CacheLsOptions,
  term: Terminal,
): Promise<ExitCodeValue> {
  if (!options.cacheRoot)
    throw new UsageError('--cache-root', 'is required: pass --cache-root <dir> or set CACHE_ROOT');
  const parsed = nodeIdSchema.safeParse(node);
  if (!parsed.success) throw new UsageError('<node>', parsed.error.issues.map((i) => i.message).join('; '));
  const root = path.resolve(options.cacheRoot);
  const store = new ImageStore({ root });
  const nodes = await store.entries.listNodes();
  if (!nodes.includes(parsed.data)) {
    throw new UsageError(
      '<node>',
      `no node ${parsed.data} under ${root} (nodes there: ${nodes.join(', ') || 'none'})`,
    );
  }
  const staleMs = parseStaleMs(options.staleMs);
  const limit = parseLimit(options.limit);
  const listing = await listCache(root, parsed.data, staleMs, limit);
  term.out(options.json ? JSON.stringify(listing) : renderCacheListing(listing));
  // The JSON says it with imagesTotal; the notice goes to stderr there.
  const notice = options.json && cutNotice(listing.images.length, listing.imagesTotal, 'images');
  if (notice) term.err(notice);
  return ExitCode.OK;
}
