import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CacheCleaner } from '@app/cache-cleaner';
import { type ImageStore, PIECE_BYTES } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import { pieceDigestsOfFile } from '../support/image-store-fixtures';

const SUFFIX = '~pieces.json';

/** What the piece lists of an idle cell were, and what a last clean removed. */
export interface PieceListFigures {
  /** Lists accepted for their verified image (each checked against the image's bytes here). */
  valid: number;
  /** Lists beside a verified image that names other bytes (the previous release replaced the image). */
  stale: number;
  /** Lists beside no verified image (the previous release deleted it): the last clean must remove them. */
  orphans: number;
  /** Verified images without a usable list (published by the previous release). */
  imagesWithoutList: number;
  /** Orphan lists a cache cleaner of this release removed in a last round. */
  orphansCleaned: number;
}

/**
 * The piece-list oracle of a cell where the previous release (which knows no lists) and this one both
 * published, replaced and deleted images: a list this release accepts always describes the image's bytes
 * (hashed here), no list is invalid, no conductor said anything about a list (the previous release must
 * skip them, never report them), and a last clean of this release leaves no list without its image.
 */
export async function judgePieceLists(
  store: ImageStore,
  nodes: string[],
  conductorLogs: Array<Record<string, unknown>>,
  timings: { staleMs: number; updateMs: number; safetyMarginMs: number; pollMs: number },
  violations: string[],
): Promise<PieceListFigures> {
  const figures: PieceListFigures = {
    valid: 0,
    stale: 0,
    orphans: 0,
    imagesWithoutList: 0,
    orphansCleaned: 0,
  };
  for (const node of nodes) {
    const names = await fsp.readdir(store.nodeLayout(node).images).catch(() => [] as string[]);
    for (const meta of await store.entries.listImages(node)) {
      const read = await store.copies.readPieceList(node, meta.imageId);
      if (read.list) {
        figures.valid++;
        const image = store.entries.imagePath(node, meta.imageId);
        const actual = await pieceDigestsOfFile(image, read.list.pieceBytes);
        if (
          read.list.pieceBytes !== PIECE_BYTES ||
          JSON.stringify(actual) !== JSON.stringify(read.list.pieces)
        )
          violations.push(
            `${node}/${meta.imageId}: an accepted piece list does not describe the image's bytes`,
          );
      } else if (read.problem.startsWith('piece list of another image')) figures.stale++;
      else if (read.problem === 'piece list missing') figures.imagesWithoutList++;
      else violations.push(`${node}/${meta.imageId}: ${read.problem}`);
    }
    for (const name of names.filter((n) => n.endsWith(SUFFIX)))
      if (!(await store.copies.verifiedImage(node, name.slice(0, -SUFFIX.length)))) figures.orphans++;
  }
  for (const line of conductorLogs.filter((l) => JSON.stringify(l).includes(SUFFIX)).slice(0, 5))
    violations.push(`a conductor logged about a piece list: ${JSON.stringify(line)}`);

  // What a delete by the previous release leaves is an orphan this release's cleaner removes at once.
  const locks = new NodeLockManager({ root: store.root, conductorId: 'piece-list-oracle', timings });
  const quiet = { info: () => undefined, warn: () => undefined };
  try {
    for (const node of nodes) {
      const report = await new CacheCleaner(store, locks, {}, quiet).clean(node);
      figures.orphansCleaned += report.deleted.filter((d) => d.why === 'orphan' && d.size === 0).length;
      for (const name of await fsp.readdir(store.nodeLayout(node).images).catch(() => [] as string[]))
        if (
          name.endsWith(SUFFIX) &&
          !(await exists(path.join(store.nodeLayout(node).images, name.slice(0, -SUFFIX.length))))
        )
          violations.push(`${node}/images/${name}: a piece list without its image after a last clean`);
    }
  } finally {
    await locks.releaseAll();
  }
  return figures;
}

async function exists(file: string): Promise<boolean> {
  return fsp.lstat(file).then(
    () => true,
    () => false,
  );
}
