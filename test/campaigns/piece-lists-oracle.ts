import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { CacheCleaner } from '@app/cache-cleaner';
import { type ImageStore, PIECES_SUFFIX, pieceBytesFor } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import type { CliRun } from '../support/agent-cli';
import { pieceDigestsOfFile } from '../support/image-store-fixtures';

const SUFFIX = PIECES_SUFFIX;

/** What the piece lists of an idle cell were, and what the last cleans did with them. */
export interface PieceListFigures {
  /** Lists accepted for their verified image (each checked against the image's bytes here). */
  valid: number;
  /** Lists beside a verified image that names other bytes (the previous release replaced the image). */
  stale: number;
  /** Lists beside no verified image (the previous release deleted it). */
  orphans: number;
  /** Verified images without a usable list (published by the previous release). */
  imagesWithoutList: number;
  /** Images the previous release's `icc cache clean` deleted on one node, each leaving its list. */
  deletedByPrevious: number;
  /** Lists alone that a cache cleaner of this release removed in a last round. */
  orphansCleaned: number;
}

type Timings = { staleMs: number; updateMs: number; safetyMarginMs: number; pollMs: number };

/**
 * The piece-list oracle of a cell where the previous release (which knows no lists) and this one both
 * published and deleted images: a list this release accepts always describes the image's bytes (hashed
 * here), no list is invalid, no conductor logged about a list, and the previous release's `icc cache ls`
 * never shows one. Then the previous release's `icc cache clean` empties the node with the most lists (its
 * deletes leave the lists behind), and a last clean of this release must leave no list without its image.
 * Destructive: run it last.
 */
export async function judgePieceLists(
  store: ImageStore,
  nodes: string[],
  conductorLogs: Array<Record<string, unknown>>,
  previousIcc: (args: string[]) => Promise<CliRun>,
  timings: Timings,
  violations: string[],
): Promise<PieceListFigures> {
  const figures: PieceListFigures = {
    valid: 0,
    stale: 0,
    orphans: 0,
    imagesWithoutList: 0,
    deletedByPrevious: 0,
    orphansCleaned: 0,
  };
  const listsOn = new Map<string, number>();
  for (const node of nodes) {
    for (const meta of await store.entries.listImages(node)) {
      const read = await store.copies.readPieceList(node, meta.imageId);
      if (read.list) {
        figures.valid++;
        const pieceBytes = pieceBytesFor(meta.size)!;
        const actual = await pieceDigestsOfFile(store.entries.imagePath(node, meta.imageId), pieceBytes);
        if (
          read.list.pieceBytes !== pieceBytes ||
          JSON.stringify(actual) !== JSON.stringify(read.list.pieces)
        )
          violations.push(
            `${node}/${meta.imageId}: an accepted piece list does not describe the image's bytes`,
          );
      } else if (read.problem.startsWith('piece list of another image')) figures.stale++;
      else if (read.problem === 'piece list missing') figures.imagesWithoutList++;
      else violations.push(`${node}/${meta.imageId}: ${read.problem}`);
    }
    const lists = (await listNames(store, node)).filter((n) => n.endsWith(SUFFIX));
    listsOn.set(node, lists.length);
    for (const name of lists)
      if (!(await store.copies.verifiedImage(node, name.slice(0, -SUFFIX.length)))) figures.orphans++;
    const ls = await previousIcc(['cache', 'ls', node, '--cache-root', store.root, '--json']);
    if (ls.code !== 0 || ls.stdout.includes(SUFFIX))
      violations.push(`previous release's icc cache ls ${node}: code ${ls.code}: ${ls.stdout.slice(0, 300)}`);
  }
  for (const line of conductorLogs.filter((l) => JSON.stringify(l).includes(SUFFIX)).slice(0, 5))
    violations.push(`a conductor logged about a piece list: ${JSON.stringify(line)}`);

  const fullest = [...listsOn].sort((a, b) => b[1] - a[1])[0]?.[0];
  if (fullest !== undefined) {
    const args = ['cache', 'clean', fullest, '--cache-root', store.root, '--max-unused', '0', '--grace', '0'];
    const run = await previousIcc([...args, '--json']);
    const report =
      run.code === 0 ? (JSON.parse(run.stdout) as { deleted: unknown[]; errors: unknown[] }) : undefined;
    if (!report || report.errors.length > 0)
      violations.push(
        `previous release's icc ${args.join(' ')}: code ${run.code}: ${run.stdout}${run.stderr}`,
      );
    figures.deletedByPrevious = report?.deleted.length ?? 0;
  }
  figures.orphansCleaned = await cleanWithThisRelease(store, nodes, timings, violations);
  return figures;
}

/** A clean of every node by this release: no list may be left without its image. Returns lists removed. */
async function cleanWithThisRelease(
  store: ImageStore,
  nodes: string[],
  timings: Timings,
  violations: string[],
): Promise<number> {
  const locks = new NodeLockManager({ root: store.root, conductorId: 'piece-list-oracle', timings });
  const quiet = { info: () => undefined, warn: () => undefined };
  let removed = 0;
  try {
    for (const node of nodes) {
      const before = (await listNames(store, node)).filter((n) => n.endsWith(SUFFIX));
      const report = await new CacheCleaner(store, locks, {}, quiet).clean(node);
      for (const error of report.errors)
        violations.push(`this release's clean of ${node}: ${JSON.stringify(error)}`);
      const names = await listNames(store, node);
      removed += before.filter((n) => !names.includes(n)).length;
      for (const name of names)
        if (name.endsWith(SUFFIX) && !names.includes(name.slice(0, -SUFFIX.length)))
          violations.push(`${node}/images/${name}: a piece list without its image after a last clean`);
    }
  } finally {
    await locks.releaseAll();
  }
  return removed;
}

function listNames(store: ImageStore, node: string): Promise<string[]> {
  return fsp.readdir(path.join(store.nodeLayout(node).images)).catch(() => [] as string[]);
}
