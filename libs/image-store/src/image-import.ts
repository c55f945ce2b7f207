import { promises as fsp } from 'node:fs';
import { ReasonError, holderIdSchema, parseField } from '@app/contracts';
import { uniqueTag } from './durable-fs';
import { type IoContext, io } from './fs-errors';
import { throwIfAborted } from './image-copier';
import type { ImageMeta } from './image-meta';
import { publishImage } from './publish';
import type { StoreContext } from './store-context';

export interface ImportImageOptions {
  signal?: AbortSignal;
  /** Names the partial copy; a fresh unique id by default. */
  attemptId?: string;
}

/**
 * Images that enter the cell from outside it (today a local file, for the demo and the tests; the place
 * for an import from an origin): published like a copy, with no source node.
 */
export class ImageImport {
  constructor(private readonly store: StoreContext) {}

  /** Seeds a cache from a file outside it (demo, tests): hashed while copied, then published like a copy. */
  async importImage(
    node: string,
    imageId: string,
    fromPath: string,
    options: ImportImageOptions = {},
  ): Promise<ImageMeta> {
    const layout = this.store.layout.node(node);
    const id = this.store.layout.imageId(imageId);
    const attemptId =
      options.attemptId === undefined
        ? uniqueTag('import')
        : parseField(holderIdSchema, options.attemptId, 'attemptId');
    throwIfAborted(options.signal);
    const sourceContext: IoContext = { side: 'source', what: `import of ${fromPath}` };
    const from = await io(sourceContext, 'opening the file', () => fsp.open(fromPath, 'r'));
    try {
      const stat = await io(sourceContext, 'stat', () => from.stat());
      if (!stat.isFile()) {
        throw new ReasonError('SOURCE_MISSING', `import of ${fromPath}: not a regular file`);
      }
      const { meta } = await publishImage(this.store, {
        destination: layout,
        imageId: id,
        tag: attemptId,
        from,
        sourceContext,
        expected: { size: stat.size },
        signal: options.signal,
        metaFields: { attemptId },
        describe: `import of ${fromPath} as image ${id} on node ${layout.node}`,
      });
      return meta;
    } finally {
      await this.store.closeQuietly(from, fromPath);
    }
  }
}
