import { type Logger, ReasonError } from '@app/contracts';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ImageStore } from '@app/image-store';
import { NodeLockManager, type NodeLockManagerOptions } from '@app/locking';
import type { OriginClient } from '../origin/origin-client';
import type { CopyJob, CopyJobResult, CopyProgress, CopyRunOptions } from './copy-job';
import type { ImageHolderIndex } from './holder-index';

/**
 * Where the cell-wide origin locks live: `<CACHE_ROOT>/.origin/downloads/locks/<imageId>/`, the same lock
 * protocol as a node's locks, in a folder no node id can name (node ids never start with a dot).
 */
export const ORIGIN_LOCK_FOLDER = '.origin';
const ORIGIN_LOCK_NODE = 'downloads';

/** The origin lock manager beside the node locks, with the same timings. */
export function originLockManager(options: NodeLockManagerOptions): NodeLockManager {
  return new NodeLockManager({ ...options, root: path.join(options.root, ORIGIN_LOCK_FOLDER) });
}

/**
 * A copy no node can serve, downloaded from the cell's origin into the destination. One download per
 * image cell-wide: the downloader holds the image's origin lock (exclusive) for the whole download, and a
 * copy that gets the lock after it first rescans the cell's holders and, when one appeared, copies from it
 * instead ('holder-appeared'). So a fan-out of one new image downloads it once, and spreads from the
 * first holder. The origin lock is always taken before the destination's, and nothing waits for an origin
 * lock while holding a node lock: no cycle.
 */
export class OriginDownload {
  downloads = 0;
  bytes = 0;

  constructor(
    private readonly store: ImageStore,
    private readonly locks: NodeLockManager,
    private readonly originLocks: NodeLockManager,
    private readonly index: ImageHolderIndex,
    private readonly client: OriginClient,
    private readonly log: Pick<Logger, 'info' | 'warn'>,
  ) {}

  describe() {
    return { ...this.client.describe(), downloads: this.downloads, bytes: this.bytes };
  }

  async run(
    job: CopyJob,
    run: CopyRunOptions,
    lockWaitMs: number,
  ): Promise<CopyJobResult | 'holder-appeared'> {
    const started = performance.now();
    const left = () => Math.max(1, Math.round(lockWaitMs - (performance.now() - started)));
    run.onProgress?.({ phase: 'waiting-for-lock', bytesDone: 0, bytesTotal: job.size ?? 0 });
    const originLock = await this.originLocks.acquire(
      { node: ORIGIN_LOCK_NODE, imageId: job.imageId, mode: 'exclusive' },
      { attemptId: run.attemptId, timeoutMs: left(), signal: run.signal },
    );
    try {
      // Another download (by any conductor) may have finished while we waited: look at the whole cell.
      await this.index.refresh();
      for (const node of await this.index.holdersOf(job.imageId)) {
        if (node === job.destination) continue;
        if (await this.store.copies.verifiedImage(node, job.imageId, { sha256: job.sha256, size: job.size }))
          return 'holder-appeared';
      }
      const held = await this.locks.acquire(
        { node: job.destination, imageId: job.imageId, mode: 'exclusive' },
        { attemptId: run.attemptId, timeoutMs: left(), signal: run.signal },
      );
      try {
        const present = await this.store.copies.verifiedImage(job.destination, job.imageId, {
          sha256: job.sha256,
          size: job.size,
        });
        if (present) return { status: 'already-present', bytes: present.size, sha256: present.sha256 };
        await this.store.entries.removeLeftoverTmp(job.destination, job.imageId);
        const signal = AbortSignal.any([held.signal, originLock.signal, ...(run.signal ? [run.signal] : [])]);
        const lockWaitMsTotal = performance.now() - started;
        const download = await this.client.open(job.imageId, signal);
        const expected = expectedBytes(job, download.url, download.sha256, download.size);
        const total = expected.size ?? 0;
        const report = (phase: CopyProgress['phase'], bytesDone: number) =>
          run.onProgress?.({ phase, bytesDone, bytesTotal: total });
        report('copying', 0);
        this.downloads += 1;
        this.log.info(
          { imageId: job.imageId, destination: job.destination, url: download.url, size: download.size },
          'origin download started',
        );
        const copyStarted = performance.now();
        const meta = await this.store.imports.importStream(
          job.destination,
          job.imageId,
          countBytes(download.chunks, (n) => (this.bytes += n)),
          `download of ${download.url}`,
          {
            attemptId: run.attemptId,
            expected,
            fencingToken: held.fencingToken,
            signal,
            onProgress: (done) => report(done >= total && total > 0 ? 'verifying' : 'copying', done),
            beforeIrreversibleStep: async (step) => {
              if (step === 'publish') report('publishing', total);
              await held.assertStillHeld();
            },
          },
        );
        this.index.learn(job.destination, job.imageId);
        return {
          status: 'completed',
          bytes: meta.size,
          sha256: meta.sha256,
          lockWaitMs: lockWaitMsTotal,
          copyMs: performance.now() - copyStarted,
          fencingToken: held.fencingToken,
        };
      } finally {
        await held.release();
      }
    } finally {
      await originLock.release();
    }
  }
}

/** What the bytes must be: the request's expectations, else the origin's headers; never nothing. */
function expectedBytes(
  job: CopyJob,
  url: string,
  originSha256: string | undefined,
  originSize: number | undefined,
): { sha256: string; size?: number } {
  if (job.sha256 !== undefined && originSha256 !== undefined && job.sha256 !== originSha256)
    throw new ReasonError(
      'CHECKSUM_MISMATCH',
      `origin ${url}: the request expects sha256 ${job.sha256} but the origin announces ${originSha256}; nothing was downloaded`,
    );
  if (job.size !== undefined && originSize !== undefined && job.size !== originSize)
    throw new ReasonError(
      'SIZE_MISMATCH',
      `origin ${url}: the request expects ${job.size} bytes but the origin announces ${originSize}; nothing was downloaded`,
    );
  const sha256 = job.sha256 ?? originSha256;
  if (sha256 === undefined)
    throw new ReasonError(
      'ORIGIN_BAD_RESPONSE',
      `origin ${url}: no checksum to verify against (the request has no sha256 and the origin sent no checksum header); nothing was downloaded`,
    );
  const size = job.size ?? originSize;
  return size === undefined ? { sha256 } : { sha256, size };
}

async function* countBytes(
  chunks: AsyncIterable<Uint8Array>,
  add: (n: number) => void,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) {
    add(chunk.byteLength);
    yield chunk;
  }
}
