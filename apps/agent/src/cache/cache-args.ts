import * as os from 'node:os';
import * as path from 'node:path';
import { holderIdSchema, nodeIdSchema } from '@app/contracts';
import type { ImageStore } from '@app/image-store';
import { UsageError } from '../cli/exit-codes';

/*
 * What the `icc cache` commands that work on the shared folder directly have in common: the cache root,
 * validated names, the node they act on, and this process's identity in lock entries.
 */

export function requireRoot(cacheRoot: string | undefined): string {
  if (!cacheRoot)
    throw new UsageError('--cache-root', 'is required: pass --cache-root <dir> or set CACHE_ROOT');
  return path.resolve(cacheRoot);
}

export function parseId(schema: typeof nodeIdSchema, value: string, field: string): string {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new UsageError(field, parsed.error.issues.map((i) => i.message).join('; '));
  return parsed.data;
}

/** `<node>` and `--cache-root` of a cache command, validated. */
export function cacheTarget(node: string, cacheRoot: string | undefined): { root: string; nodeId: string } {
  return { root: requireRoot(cacheRoot), nodeId: parseId(nodeIdSchema, node, '<node>') };
}

/** The node's folder must exist (a cache to list or clean). */
export async function requireNode(store: ImageStore, root: string, node: string): Promise<void> {
  const nodes = await store.entries.listNodes();
  if (!nodes.includes(node))
    throw new UsageError(
      '<node>',
      `no node ${node} under ${root} (nodes there: ${nodes.slice(0, 20).join(', ') || 'none'})`,
    );
}

/** The node must be registered (a cache to write into, as the conductors require). */
export async function requireRegisteredNode(store: ImageStore, root: string, node: string): Promise<void> {
  const registration = await store.markers.nodeRegistration(node);
  if (!registration.registered)
    throw new UsageError(
      '<node>',
      `node ${node} is not registered under ${root} (${registration.problem}); register it with icc node add ${node}`,
    );
}

/** This process in lock entries: `icc-<host>-<pid>`, as `icc cache ls` and GET /locks show it. */
export function cliHolderId(): string {
  const host = os
    .hostname()
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/\.\.+/g, '.');
  const id = `icc-${host}`.slice(0, 50) + `-${process.pid}`;
  return holderIdSchema.safeParse(id).success ? id : `icc-${process.pid}`;
}
