import { ConductorError } from '@app/contracts';
import type { ImageMeta, ImageStore } from '@app/image-store';
import type { CopyJob } from './copy-job';

/**
 * Picks the node to copy from: the requested one if it holds a verified copy, else the verified holder
 * with the fewest reads running in this conductor, so a fan-out spreads its reads over the nodes that
 * already finished.
 */
export class SourceSelector {
  private readonly activeReads = new Map<string, number>();

  constructor(private readonly store: ImageStore) {}

  async pick(job: CopyJob): Promise<{ node: string; meta: ImageMeta }> {
    const expected = { sha256: job.sha256, size: job.size };
    if (job.source) {
      const meta = await this.store.verifiedImage(job.source, job.imageId, expected);
      if (!meta) throw new ConductorError('SOURCE_MISSING', `source: node ${job.source} holds no verified copy of ${job.imageId}`);
      return { node: job.source, meta };
    }
    const candidates: Array<{ node: string; meta: ImageMeta }> = [];
    for (const node of await this.store.listNodes()) {
      if (node === job.destination) continue;
      const meta = await this.store.verifiedImage(node, job.imageId, expected);
      if (meta) candidates.push({ node, meta });
    }
    if (candidates.length === 0)
      throw new ConductorError('SOURCE_MISSING', `no node holds a verified copy of ${job.imageId}${job.sha256 ? ` with sha256 ${job.sha256}` : ''}`);
    candidates.sort((a, b) => this.reads(a.node) - this.reads(b.node) || a.node.localeCompare(b.node));
    return candidates[0]!;
  }

  /** Counts a read of `node` until the returned function is called. */
  beginRead(node: string): () => void {
    this.activeReads.set(node, this.reads(node) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const left = this.reads(node) - 1;
      if (left > 0) this.activeReads.set(node, left);
      else this.activeReads.delete(node);
    };
  }

  reads(node: string): number {
    return this.activeReads.get(node) ?? 0;
  }
}
