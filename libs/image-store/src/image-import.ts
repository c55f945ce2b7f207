import { promises as fsp } from 'node:fs';
import { ReasonError, holderIdSchema, parseField } from '@app/contracts';
import { uniqueTag } from './durable-fs';
import { type IoContext, io } from './fs-errors';
import { throwIfAborted } from './image-copier';
import type { ImageMeta } from './image-meta';
import { type IrreversibleStep, type PublishSource, publishImage } from './publish';
import { type ExpectedImage, type StoreContext, parseExpected } from './store-context';

export interface ImportImageOptions {
  signal?: AbortSignal;
  /** Names the partial copy; a fresh unique id by default. */
  attemptId?: string;
  /** Checked against the bytes before anything is published (sha256: 64 hex digits). */
  expected?: ExpectedImage;
  /** The destination lock's generation, recorded in the meta. */
  fencingToken?: number;
  requestId?: string;
  onProgress?: (bytesDone: number) => void;
  /** As for a copy: the caller checks its destination lock here; a throw stops the step. */
  beforeIrreversibleStep?: (step: IrreversibleStep) => Promise<void> | void;
}

/**
 * Images that enter the cell from outside it: a local file (`icc cache import`, the demo) or a download
 * from the cell's origin (a stream of chunks). Published like a copy, with no source node; the caller
 * holds the destination's exclusive lock.
 */
export class ImageImport {
  constructor(private readonly store: StoreContext) {}

  /** Imports a regular file: hashed while copied, verified against `expected`, then published. */
  async importImage(
    node: string,
    imageId: string,
    fromPath: string,
    options: ImportImageOptions = {},
  ): Promise<ImageMeta> {
    // Bad names fail before the file is touched.
    this.store.layout.node(node);
    this.store.layout.imageId(imageId);
    const sourceContext: IoContext = { side: 'source', what: `import of ${fromPath}` };
    const from = await io(sourceContext, 'opening the file', () => fsp.open(fromPath, 'r'));
    try {
      const stat = await io(sourceContext, 'stat', () => from.stat());
      if (!stat.isFile()) {
        throw new ReasonError('SOURCE_MISSING', `import of ${fromPath}: not a regular file`);
      }
      const expected = parseExpected(options.expected);
      if (expected.size !== undefined && expected.size !== stat.size)
        throw new ReasonError(
          'SIZE_MISMATCH',
          `import of ${fromPath}: the file has ${stat.size} bytes, expected ${expected.size}; nothing was published`,
        );
      return await this.publish(
        node,
        imageId,
        { file: from },
        sourceContext,
        { ...expected, size: stat.size },
        'file',
        `import of ${fromPath}`,
        options,
      );
    } finally {
      await this.store.closeQuietly(from, fromPath);
    }
  }

  /** Imports a stream (an origin download): its errors pass through; `describe` names it in messages. */
  async importStream(
    node: string,
    imageId: string,
    chunks: AsyncIterable<Uint8Array>,
    describe: string,
    options: ImportImageOptions = {},
  ): Promise<ImageMeta> {
    const sourceContext: IoContext = { side: 'source', what: describe };
    const expected = parseExpected(options.expected);
    return this.publish(node, imageId, { chunks }, sourceContext, expected, 'origin', describe, options);
  }

  private async publish(
    node: string,
    imageId: string,
    from: PublishSource,
    sourceContext: IoContext,
    expected: ExpectedImage,
    via: 'file' | 'origin',
    describe: string,
    options: ImportImageOptions,
  ): Promise<ImageMeta> {
    const layout = this.store.layout.node(node);
    const id = this.store.layout.imageId(imageId);
    const attemptId =
      options.attemptId === undefined
        ? uniqueTag('import')
        : parseField(holderIdSchema, options.attemptId, 'attemptId');
    throwIfAborted(options.signal);
    const { meta } = await publishImage(this.store, {
      destination: layout,
      imageId: id,
      tag: attemptId,
      from,
      sourceContext,
      expected,
      signal: options.signal,
      onProgress: options.onProgress,
      beforeIrreversibleStep: options.beforeIrreversibleStep,
      metaFields: {
        source: { via, ...(options.requestId === undefined ? {} : { requestId: options.requestId }) },
        ...(options.fencingToken === undefined ? {} : { fencingToken: options.fencingToken }),
        attemptId,
      },
      describe: `${describe} as image ${id} on node ${layout.node}`,
    });
    return meta;
  }
}
