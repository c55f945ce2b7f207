/*
 * A separate process running the cache cleaner in a tight loop on one node, the way `icc cache clean` or a
 * conductor's schedule would, for the cleaner-beside-copies test. Config comes as one JSON argument;
 * every deletion is reported to the parent over IPC with its wall-clock bounds, taken inside the lock.
 * Stops on the IPC message 'stop' (or when the parent goes away).
 */
import { CacheCleaner } from '@app/cache-cleaner';
import { type CacheEntries, ImageStore } from '@app/image-store';
import { NodeLockManager, readLockActivity } from '@app/locking';
import { sleep } from './async';

export interface CleanerWorkerConfig {
  root: string;
  node: string;
  conductorId: string;
  timings: { staleMs: number; updateMs?: number; safetyMarginMs?: number; pollMs?: number };
  /** Passed to clean() every round (the test uses 0: delete whatever can be locked). */
  maxUnusedMs: number;
  lockWaitMs: number;
  /** Pause between two rounds. */
  pauseMs: number;
}

export type CleanerWorkerReport =
  | { type: 'ready'; pid: number }
  | {
      type: 'deleted';
      imageId: string;
      size: number;
      /** Right after the exclusive lock was granted, and right after the delete (Date.now of this process). */
      lockedAt: number;
      deletedAt: number;
      /** Reader entries found in the image's lock folder just before and just after the delete: must be none. */
      readersAtDelete: string[];
    }
  | {
      type: 'round';
      examined: number;
      deleted: number;
      skippedBusy: number;
      keptChanged: number;
      errors: string[];
    }
  | { type: 'done'; rounds: number; deletions: number; skippedBusy: number };

const config = JSON.parse(process.argv[2]!) as CleanerWorkerConfig;
const send = (report: CleanerWorkerReport) => process.send?.(report);
let stopping = false;
process.on('message', (m) => {
  if (m === 'stop') stopping = true;
});
process.on('disconnect', () => {
  stopping = true;
});

async function main(): Promise<void> {
  const store = new ImageStore({ root: config.root, fsync: false });
  // The store as the cleaner sees it, with a look at the lock folder around every delete: the cleaner
  // holds the exclusive gate then, so no reader entry may exist (a live one would mean a copy reading).
  const entries = Object.create(store.entries) as CacheEntries;
  const observed = Object.assign(Object.create(store) as ImageStore, { entries });
  const readersAtDelete = new Map<string, string[]>();
  entries.deleteImage = async (node, imageId, judged) => {
    const readers = async () =>
      (await readLockActivity(config.root, { node, imageId })).readers.map(
        (h) => `${h.conductorId}~${h.attemptId}`,
      );
    const before = await readers();
    const result = await store.entries.deleteImage(node, imageId, judged);
    readersAtDelete.set(imageId, [...before, ...(await readers())]);
    return result;
  };
  const locks = new NodeLockManager({
    root: config.root,
    conductorId: config.conductorId,
    timings: config.timings,
  });
  const quiet = {
    info: () => undefined,
    warn: (f: object, m: string) => console.error(m, JSON.stringify(f)),
  };
  const cleaner = new CacheCleaner(observed, locks, { lockWaitMs: config.lockWaitMs }, quiet);
  send({ type: 'ready', pid: process.pid });
  let rounds = 0;
  let deletions = 0;
  let skippedBusy = 0;
  while (!stopping) {
    const report = await cleaner.clean(config.node, { maxUnusedMs: config.maxUnusedMs });
    rounds++;
    for (const d of report.deleted) {
      deletions++;
      send({
        type: 'deleted',
        imageId: d.imageId,
        size: d.size,
        lockedAt: d.lockedAt!,
        deletedAt: d.deletedAt!,
        readersAtDelete: readersAtDelete.get(d.imageId) ?? [],
      });
    }
    skippedBusy += report.skippedBusy.length;
    send({
      type: 'round',
      examined: report.examined,
      deleted: report.deleted.length,
      skippedBusy: report.skippedBusy.length,
      keptChanged: report.keptChanged.length,
      errors: report.errors.map((e) => `${e.imageId}: ${e.error}`),
    });
    await sleep(config.pauseMs);
  }
  await locks.releaseAll();
  // Exit only once the last report is out of the IPC channel.
  await new Promise<void>((resolve) =>
    process.send!({ type: 'done', rounds, deletions, skippedBusy } satisfies CleanerWorkerReport, () =>
      resolve(),
    ),
  );
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
