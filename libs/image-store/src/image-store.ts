import { CacheEntries } from './cache-entries';
import type { NodeLayout } from './cache-layout';
import { CopyPipeline } from './copy-pipeline';
import { ImageImport } from './image-import';
import { JobRecords } from './job-records';
import { NodeMarkers } from './node-markers';
import { RequestAnswers } from './request-answers';
import { type ImageStoreOptions, StoreContext } from './store-context';

/**
 * The node caches under CACHE_ROOT, one part per job, all sharing one layout, one fsync switch and one
 * record of the broken files already reported (so a broken meta file is reported once, whichever part
 * reads it):
 * - `copies`: the verified, atomic copy between two nodes and the checks a copy is decided on;
 * - `entries`: what a cache holds (listing, reading, deleting images; partial copies of dead attempts);
 * - `markers`: a node's registration (`node.json`), pins and the draining marker;
 * - `imports`: images entering the cell from outside it;
 * - `jobs`: the durable records of pre-cache and purge jobs and of cancels;
 * - `answers`: the first final answer of each plain copy request.
 * It knows nothing of locks: the callers of each part say which lock they hold.
 */
export class ImageStore {
  readonly root: string;
  readonly copies: CopyPipeline;
  readonly entries: CacheEntries;
  readonly markers: NodeMarkers;
  readonly imports: ImageImport;
  readonly jobs: JobRecords;
  readonly answers: RequestAnswers;
  private readonly context: StoreContext;

  constructor(options: ImageStoreOptions) {
    this.context = new StoreContext(options);
    this.root = this.context.root;
    this.copies = new CopyPipeline(this.context);
    this.entries = new CacheEntries(this.context);
    this.markers = new NodeMarkers(this.context);
    this.imports = new ImageImport(this.context);
    this.jobs = new JobRecords(this.context);
    this.answers = new RequestAnswers(this.context);
  }

  /** Stops the copy worker threads (ImageStoreOptions.copyWorkers); copies still running fail. */
  close(): Promise<void> {
    return this.context.copier.close();
  }

  /** The validated folders of one node's cache. */
  nodeLayout(node: string): NodeLayout {
    return this.context.layout.node(node);
  }
}
