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
    // Holders are looked up without the request's expectations, so that a holder of other bytes is
    // reported as the mismatch it is (CHECKSUM_MISMATCH / SIZE_MISMATCH), not as a missing source.
    if (job.source) {
      const meta = await this.store.verifiedImage(job.source, job.imageId);
      if (!meta) throw new ConductorError('SOURCE_MISSING', `source: node ${job.source} holds no verified copy of ${job.imageId}`);
      const mismatch = mismatchOf(job, [{ node: job.source, meta }]);
      if (mismatch) throw mismatch;
      return { node: job.source, meta };
    }
    const holders: Array<{ node: string; meta: ImageMeta }> = [];
    for (const node of await this.store.listNodes()) {
      if (node === job.destination) continue;
      const meta = await this.store.verifiedImage(node, job.imageId);
      if (meta) holders.push({ node, meta });
    }
    if (holders.length === 0) throw new ConductorError('SOURCE_MISSING', `no node holds a verified copy of ${job.imageId}`);
    const candidates = holders.filter((h) => matchesJob(job, h.meta));
    if (candidates.length === 0) throw mismatchOf(job, holders)!;
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

function matchesJob(job: CopyJob, meta: ImageMeta): boolean {
  return (job.sha256 === undefined || meta.sha256 === job.sha256) && (job.size === undefined || meta.size === job.size);
}

/** The error for holders none of which has the requested bytes (a checksum difference wins over size). */
function mismatchOf(job: CopyJob, holders: Array<{ node: string; meta: ImageMeta }>): ConductorError | undefined {
  if (holders.some((h) => matchesJob(job, h.meta))) return undefined;
  const shown = holders.slice(0, 5).map((h) => `node ${h.node} has sha256 ${h.meta.sha256}, ${h.meta.size} bytes`);
  const held = shown.join('; ') + (holders.length > shown.length ? `; and ${holders.length - shown.length} more nodes` : '');
  const checksumDiffers = job.sha256 !== undefined && holders.some((h) => h.meta.sha256 !== job.sha256);
  return checksumDiffers
    ? new ConductorError('CHECKSUM_MISMATCH', `image ${job.imageId}: the request expects sha256 ${job.sha256} but ${held}; nothing was copied`)
    : new ConductorError('SIZE_MISMATCH', `image ${job.imageId}: the request expects ${job.size} bytes but ${held}; nothing was copied`);
}
