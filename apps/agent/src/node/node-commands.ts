import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { nodeIdSchema } from '@app/contracts';
import { ImageStore, type NodeMarker, registeredBySchema } from '@app/image-store';
import { inspectLocks } from '@app/locking';
import { describeHolders } from '../cache/cache-ls';
import { CliError, ExitCode, type ExitCodeValue, UsageError } from '../cli/exit-codes';
import { formatBytes } from '../cli/format';
import { table } from '../cli/tables';
import { cutNotice, parseLimit } from '../cli/listing-limit';
import type { Terminal } from '../cli/terminal';
import { parseStaleMs } from '../cli/stale-ms-option';

/*
 * `icc node add|ls|rm`: a node is part of the cell once `<root>/<node>/node.json` holds a valid marker.
 * Conductors copy only to and from registered nodes, and never create a node's folder themselves.
 */

export interface NodeAddOptions {
  cacheRoot?: string;
  /** Register every node folder that already has an images/ folder and no valid marker (migration). */
  existing?: boolean;
  by?: string;
  json?: boolean;
}

export interface NodeLsOptions {
  cacheRoot?: string;
  json?: boolean;
  /** --limit: nodes shown (DEFAULT_LISTING_LIMIT); the rest are counted, not read. */
  limit?: string;
}

export interface NodeRmOptions {
  cacheRoot?: string;
  force?: boolean;
  staleMs?: string;
}

/** One line of `icc node ls`. */
export interface NodeListing {
  node: string;
  registered: boolean;
  registeredAt?: string;
  registeredBy?: string;
  /** Why the node counts as not registered (no marker, or the field at fault in a broken one). */
  problem?: string;
  draining: boolean;
  /** Verified images, and their bytes. */
  images: number;
  bytes: number;
}

/** `icc node add <node>` or `icc node add --existing`. */
export async function runNodeAdd(
  node: string | undefined,
  options: NodeAddOptions,
  term: Terminal,
): Promise<ExitCodeValue> {
  const root = await requireRoot(options.cacheRoot);
  if (node !== undefined && options.existing)
    throw new UsageError('--existing', 'registers every existing node folder: give no <node> with it');
  if (node === undefined && !options.existing)
    throw new UsageError(
      '<node>',
      'is required (or --existing, to register every node folder that has images/)',
    );
  const by = options.by ?? defaultRegisteredBy();
  const parsedBy = registeredBySchema.safeParse(by);
  if (!parsedBy.success) throw new UsageError('--by', parsedBy.error.issues.map((i) => i.message).join('; '));
  const store = new ImageStore({ root, onWarning: (message) => term.err(`icc: warning: ${message}`) });
  const nodes = node === undefined ? await existingUnregistered(store) : [parseNode(node)];
  const added: Array<{ node: string; created: boolean; marker: NodeMarker }> = [];
  for (const id of nodes) added.push({ node: id, ...(await store.markers.registerNode(id, parsedBy.data)) });
  if (options.json) term.out(JSON.stringify(added.map((a) => ({ ...a.marker, created: a.created }))));
  else if (added.length === 0) term.out(`no unregistered node folder with images/ under ${root}`);
  else
    for (const a of added)
      term.out(
        a.created
          ? `registered node ${a.node} (${store.nodeLayout(a.node).marker})`
          : `node ${a.node} was already registered (at ${a.marker.registeredAt} by ${a.marker.registeredBy})`,
      );
  return ExitCode.OK;
}

/** `icc node ls`: every node folder under the root, registered or not. */
export async function runNodeLs(options: NodeLsOptions, term: Terminal): Promise<ExitCodeValue> {
  const limit = parseLimit(options.limit);
  const root = await requireRoot(options.cacheRoot);
  // Broken markers are shown in the listing itself: no warning lines beside it.
  const store = new ImageStore({ root, onWarning: () => undefined });
  const { listing, total } = await listNodes(store, limit);
  const notice = cutNotice(listing.length, total, 'nodes');
  // The JSON stays an array of nodes: the notice goes to stderr there.
  if (options.json) {
    term.out(JSON.stringify(listing));
    if (notice) term.err(notice);
  } else term.out([renderNodeListing(listing, root), notice].filter(Boolean).join('\n'));
  return ExitCode.OK;
}

/** The first `limit` node folders (by id), each read; `total`: how many there are. */
export async function listNodes(
  store: ImageStore,
  limit = Infinity,
): Promise<{ listing: NodeListing[]; total: number }> {
  const listing: NodeListing[] = [];
  const nodes = await store.entries.listNodes();
  for (const node of nodes.slice(0, limit)) {
    const registration = await store.markers.nodeRegistration(node);
    const images = await store.entries.listImages(node);
    listing.push({
      node,
      registered: registration.registered,
      ...(registration.registered
        ? { registeredAt: registration.marker.registeredAt, registeredBy: registration.marker.registeredBy }
        : { problem: registration.problem }),
      draining: await store.markers.isDraining(node),
      images: images.length,
      bytes: images.reduce((sum, meta) => sum + meta.size, 0),
    });
  }
  return { listing, total: nodes.length };
}

export function renderNodeListing(listing: readonly NodeListing[], root: string): string {
  if (listing.length === 0) return `no nodes under ${root} (register one with icc node add <node>)`;
  return table(
    ['node', 'registered at', 'registered by', 'draining', 'images', 'bytes'],
    listing.map((n) => [
      n.node,
      n.registered ? n.registeredAt! : `not registered: ${n.problem}`,
      n.registeredBy ?? '-',
      n.draining ? 'yes' : 'no',
      String(n.images),
      formatBytes(n.bytes),
    ]),
  );
}

/**
 * `icc node rm <node>`: removes the marker only; the node's folder and cache stay (a later `node add`
 * brings it back as it was). Refused while any lock of the node is held, and, without --force, while it
 * holds cached images.
 */
export async function runNodeRm(
  node: string,
  options: NodeRmOptions,
  term: Terminal,
): Promise<ExitCodeValue> {
  const root = await requireRoot(options.cacheRoot);
  const id = parseNode(node);
  const staleMs = parseStaleMs(options.staleMs);
  const store = new ImageStore({ root, onWarning: () => undefined });
  const layout = store.nodeLayout(id);
  const registration = await store.markers.nodeRegistration(id);
  // A broken marker may be removed like a valid one; no marker at all is nothing to remove.
  if (!registration.registered && !(await present(layout.marker)))
    throw new UsageError('<node>', `node ${id} is not registered under ${root} (${registration.problem})`);
  const locks = await inspectLocks(root, { node: id, staleMs });
  if (locks.entries.length > 0 || locks.truncated > 0)
    throw new CliError(
      ExitCode.ERROR,
      `node ${id}: ${locks.entries.length + locks.truncated} lock(s) held, not unregistered (try again once they are released):\n${locks.entries
        .slice(0, 10)
        .map((e) => `  ${e.imageId}: ${describeHolders([e])}`)
        .join('\n')}`,
    );
  const entries = await store.entries.listEntries(id);
  if (entries.length > 0 && !options.force)
    throw new UsageError(
      '<node>',
      `node ${id} holds ${entries.length} cached image(s) (${formatBytes(entries.reduce((s, e) => s + e.bytes, 0))}): pass --force to unregister it anyway (the images stay in ${layout.images})`,
    );
  await store.markers.unregisterNode(id);
  term.out(
    `unregistered node ${id}: conductors no longer copy to or from it${entries.length > 0 ? `; its ${entries.length} cached image(s) stay in ${layout.images}` : ''}`,
  );
  return ExitCode.OK;
}

/** The node folders an existing cell (from before registration) has: those with an images/ folder. */
async function existingUnregistered(store: ImageStore): Promise<string[]> {
  const found: string[] = [];
  for (const node of await store.entries.listNodes()) {
    if ((await store.markers.isRegistered(node)) || !(await isFolder(store.nodeLayout(node).images)))
      continue;
    found.push(node);
  }
  return found;
}

export async function requireRoot(cacheRoot: string | undefined): Promise<string> {
  if (!cacheRoot)
    throw new UsageError('--cache-root', 'is required: pass --cache-root <dir> or set CACHE_ROOT');
  const root = path.resolve(cacheRoot);
  if (!(await isFolder(root))) throw new UsageError('--cache-root', `${root} is not an existing folder`);
  return root;
}

function parseNode(node: string): string {
  const parsed = nodeIdSchema.safeParse(node);
  if (!parsed.success) throw new UsageError('<node>', parsed.error.issues.map((i) => i.message).join('; '));
  return parsed.data;
}

/** `<user>@<host>`, reduced to what a marker accepts. */
function defaultRegisteredBy(): string {
  let user = 'unknown';
  try {
    user = os.userInfo().username;
  } catch {
    // no passwd entry (containers): keep "unknown"
  }
  return `icc ${user}@${os.hostname()}`.replace(/[^\x20-\x7e]/g, '?').slice(0, 128);
}

async function isFolder(dir: string): Promise<boolean> {
  return (await fsp.stat(dir).catch(() => undefined))?.isDirectory() === true;
}

async function present(file: string): Promise<boolean> {
  return (await fsp.lstat(file).catch(() => undefined)) !== undefined;
}
