import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ReasonError, imageIdSchema, parseField } from '@app/contracts';
import { ensureNodeFolder, fsyncDir, uniqueTag, writeFileAtomic } from './durable-fs';
import { type IoContext, io, isErrno, readFolderOrEmpty } from './fs-errors';
import {
  NODE_MARKER_VERSION,
  type NodeMarker,
  readNodeMarker,
  registeredBySchema,
  serializeNodeMarker,
} from './node-marker-file';
import { type StoreContext, cacheContext, unlinkIfPresent } from './store-context';

/** A node's registration: its marker, or why it counts as unknown. */
export type NodeRegistration =
  | { registered: true; marker: NodeMarker; problem?: undefined }
  | { registered: false; marker?: undefined; problem: string };

/**
 * The marker files of a node, written by operators and agents and read by conductors: the registration
 * `<node>/node.json` (a node is part of the cell), pins `<node>/pinned/<imageId>` (never evicted) and
 * `<node>/draining` (never chosen as a source).
 */
export class NodeMarkers {
  constructor(private readonly store: StoreContext) {}

  /**
   * Whether `node` is registered: `<node>/node.json` holds a valid marker for exactly this node. A missing
   * folder or marker is an unknown node; so is a broken marker, reported once per file version.
   */
  async nodeRegistration(node: string): Promise<NodeRegistration> {
    const layout = this.store.layout.node(node);
    const read = await io({ side: 'cache', what: `node ${layout.node}` }, 'reading the node marker', () =>
      readNodeMarker(layout.marker, layout.node),
    );
    if (read.value) return { registered: true, marker: read.value };
    if (read.missing) return { registered: false, problem: `no marker ${layout.marker}` };
    this.store.reportInvalid(
      layout.marker,
      read,
      `node ${layout.node} counts as not registered until it is fixed (icc node add ${layout.node})`,
    );
    return { registered: false, problem: `invalid marker ${layout.marker}: ${read.invalid}` };
  }

  async isRegistered(node: string): Promise<boolean> {
    return (await this.nodeRegistration(node)).registered;
  }

  /**
   * Registers `node`: creates its folder if needed (CACHE_ROOT must exist) and writes its marker atomically.
   * An existing valid marker is kept (created: false); a broken one is replaced.
   */
  async registerNode(node: string, registeredBy: string): Promise<{ marker: NodeMarker; created: boolean }> {
    const layout = this.store.layout.node(node);
    const by = parseField(registeredBySchema, registeredBy, 'registeredBy');
    const current = await this.nodeRegistration(layout.node);
    if (current.registered) return { marker: current.marker, created: false };
    const context: IoContext = { side: 'cache', what: `node ${layout.node}` };
    const createdFolder = await io(context, 'creating the node folder', async () => {
      try {
        await fsp.mkdir(layout.dir);
        return true;
      } catch (error) {
        // Registration creates the node's folder, never CACHE_ROOT itself (a mistyped root stays visible).
        if (isErrno(error, 'ENOENT'))
          throw new ReasonError(
            'IO_ERROR',
            `node ${layout.node}: the cache root ${this.store.root} does not exist`,
            { cause: error },
          );
        if (!isErrno(error, 'EEXIST')) throw error;
        if (!(await fsp.lstat(layout.dir)).isDirectory())
          throw Object.assign(new Error(`ENOTDIR: ${layout.dir} exists and is not a folder`), {
            code: 'ENOTDIR',
          });
        return false;
      }
    });
    if (createdFolder && this.store.fsync)
      await io(context, 'fsync of the cache root', () => fsyncDir(this.store.root));
    const marker: NodeMarker = {
      v: NODE_MARKER_VERSION,
      node: layout.node,
      registeredAt: new Date().toISOString(),
      registeredBy: by,
    };
    await io(context, 'writing the node marker', () =>
      writeFileAtomic({
        // Beside the marker (same file system); a name no node id or cache folder can have.
        tmpPath: path.join(layout.dir, `.${path.basename(layout.marker)}~${uniqueTag('marker')}.part`),
        finalPath: layout.marker,
        finalDir: layout.dir,
        data: serializeNodeMarker(marker),
        fsync: this.store.fsync,
        discard: (tmpPath) => this.store.discard(tmpPath),
      }),
    );
    return { marker, created: true };
  }

  /** Removes the node's marker (its cache stays); returns whether there was one. */
  async unregisterNode(node: string): Promise<boolean> {
    const layout = this.store.layout.node(node);
    const context: IoContext = { side: 'cache', what: `node ${layout.node}` };
    const removed = await io(context, 'removing the node marker', () => unlinkIfPresent(layout.marker));
    if (removed && this.store.fsync)
      await io(context, 'fsync of the node folder', () => fsyncDir(layout.dir));
    return removed;
  }

  /** True while `<node>/pinned/<imageId>` exists: the cache cleaner never deletes a pinned image. */
  async isPinned(node: string, imageId: string): Promise<boolean> {
    const layout = this.store.layout.node(node);
    const id = this.store.layout.imageId(imageId);
    return this.store.entryExists(
      this.store.layout.pinPath(layout, id),
      cacheContext(layout, id),
      'checking the pin',
    );
  }

  /** The node's pinned image ids (names in `pinned/` that are not valid image ids are ignored). */
  async listPinned(node: string): Promise<Set<string>> {
    const layout = this.store.layout.node(node);
    const context = { side: 'cache', what: `node ${layout.node}, pinned folder` } as const;
    const names = await readFolderOrEmpty(layout.pinned, context, 'listing pins');
    return new Set(names.filter((name) => imageIdSchema.safeParse(name).success));
  }

  /** Creates the pin marker `<node>/pinned/<imageId>` (idempotent). The image need not be cached yet. */
  async pin(node: string, imageId: string): Promise<void> {
    const layout = this.store.layout.node(node);
    const id = this.store.layout.imageId(imageId);
    const context = cacheContext(layout, id);
    await io(context, 'creating the pin', async () => {
      await ensureNodeFolder(layout, layout.pinned);
      const handle = await fsp.open(this.store.layout.pinPath(layout, id), 'a', 0o644);
      await handle.close();
      if (this.store.fsync) await fsyncDir(layout.pinned);
    });
  }

  /** Removes the pin marker; returns whether there was one. */
  async unpin(node: string, imageId: string): Promise<boolean> {
    const layout = this.store.layout.node(node);
    const id = this.store.layout.imageId(imageId);
    const context = cacheContext(layout, id);
    const removed = await io(context, 'removing the pin', async () => {
      const pin = this.store.layout.pinPath(layout, id);
      const stat = await fsp.lstat(pin).catch((error: unknown) => {
        if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
        throw error;
      });
      if (!stat) return false;
      await fsp.rm(pin, { recursive: stat.isDirectory(), force: true });
      return true;
    });
    if (removed && this.store.fsync)
      await io(context, 'fsync of the pinned folder', () => fsyncDir(layout.pinned));
    return removed;
  }

  /** True while the operator's marker `<node>/draining` exists: conductors do not pick the node as a source. */
  async isDraining(node: string): Promise<boolean> {
    const layout = this.store.layout.node(node);
    return this.store.entryExists(
      layout.draining,
      { side: 'cache', what: `node ${layout.node}` },
      'checking the draining marker',
    );
  }
}
