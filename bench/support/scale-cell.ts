/*
 * A big cell for bench/cell-scale.ts, built quickly through the product's own code: one template node gets
 * its images (ImageStore imports) and one use of each image's lock (NodeLockManager: an epoch, a generation
 * and its release marker, as a copy leaves them), then every other registered node gets a copy of the
 * template's images/ and locks/ folders with `cp -a` (mtimes kept, so every key's floor stays its own).
 */
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { NodeLockManager } from '@app/locking';
import type { BenchCell } from './bench-cell';

const run = promisify(execFile);

export interface ScaleCellShape {
  nodes: string[];
  imagesPerNode: number;
  imageBytes: number;
  /** One released use of each image's lock (false: the state once idle key folders are retired). */
  lockHistory: boolean;
}

export function scaleNodeNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `node-${String(i).padStart(5, '0')}`);
}

export function historyImageId(i: number): string {
  return `hist-${String(i).padStart(3, '0')}`;
}

/** Fills every node of `cell` with `imagesPerNode` images and one released use of each image's lock. */
export async function fillScaleCell(cell: BenchCell, shape: ScaleCellShape): Promise<void> {
  const [template, ...others] = shape.nodes;
  const locks = new NodeLockManager({ root: cell.root, conductorId: 'bench-builder' });
  for (let i = 0; i < shape.imagesPerNode; i++) {
    const imageId = historyImageId(i);
    await cell.seed(template!, imageId, shape.imageBytes);
    if (!shape.lockHistory) continue;
    const lock = await locks.acquire({ node: template!, imageId, mode: 'exclusive' }, { timeoutMs: 10_000 });
    await lock.release();
  }
  const from = path.join(cell.root, template!);
  const queue = [...others];
  const worker = async () => {
    for (let node = queue.shift(); node !== undefined; node = queue.shift())
      await run('cp', [
        '-a',
        ...(shape.lockHistory ? [path.join(from, 'locks')] : []),
        path.join(from, 'images'),
        path.join(cell.root, node),
      ]);
  };
  await Promise.all(Array.from({ length: 4 }, worker));
}
