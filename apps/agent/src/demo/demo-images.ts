import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ImageStore } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import { cliHolderId } from '../cache/cache-args';
import { importUnderLock } from '../cache/cache-import';
import { formatBytes } from '../cli/format';
import type { Terminal } from '../cli/terminal';
import type { DemoOrigin } from './demo-origin';
import { type DemoPlan, expectedDestinations } from './demo-plan';
import { sha256OfFile, writeRandomImage } from './image-files';

/*
 * The demo's images: written with random content and a known sha256 before the copies, and hashed again
 * at every destination afterwards, independently of the conductor.
 */

/** Nobody else holds a lock in the demo's fresh cell: a wait this long would be a bug. */
const SEED_LOCK_WAIT_MS = 10_000;

/** Writes each image with random content and a known checksum, and imports it into its seed node. */
export async function seedImages(
  root: string,
  plan: DemoPlan,
  dir: string,
  origin: DemoOrigin,
  term: Terminal,
  signal: AbortSignal,
): Promise<Map<string, string>> {
  const store = new ImageStore({ root, fsync: false });
  await fsp.mkdir(root, { recursive: true });
  for (const node of plan.nodes) await store.markers.registerNode(node, 'icc demo');
  const locks = new NodeLockManager({ root, conductorId: cliHolderId() });
  const seeded = new Map<string, string>();
  const total = plan.images.reduce((n, i) => n + i.bytes, 0);
  term.out(
    `seeding ${plan.images.length} images (${formatBytes(total)}): ${plan.images.map((i) => `${i.imageId} ${formatBytes(i.bytes)} on ${i.seedNode ?? 'the origin only'}`).join(', ')}`,
  );
  for (const image of plan.images) {
    if (signal.aborted) throw signal.reason;
    const file = path.join(dir, `seed-${image.imageId}`);
    const sha256 = await writeRandomImage(file, image.bytes);
    seeded.set(image.imageId, sha256);
    if (image.seedNode === undefined) {
      origin.serve(image.imageId, file, sha256);
      continue;
    }
    // The documented import path (`icc cache import`, docs/cache-layout.md): under the image's lock,
    // verified against the sha256 computed while the file was written.
    await importUnderLock({
      store,
      locks,
      node: image.seedNode,
      imageId: image.imageId,
      file,
      sha256,
      lockWaitMs: SEED_LOCK_WAIT_MS,
      signal,
    });
    await fsp.rm(file, { force: true });
  }
  await locks.releaseAll();
  return seeded;
}

/** Hashes every destination image here, independently of the conductor and of meta files. */
export async function verifyDestinations(
  store: ImageStore,
  plan: DemoPlan,
  seeded: Map<string, string>,
  term: Terminal,
  signal: AbortSignal,
): Promise<{ ok: boolean; good: number; total: number }> {
  const targets = expectedDestinations(plan);
  let good = 0;
  for (const { imageId, node } of targets) {
    if (signal.aborted) throw signal.reason;
    const file = store.entries.imagePath(node, imageId);
    const actual = await sha256OfFile(file).catch((error: NodeJS.ErrnoException) =>
      error.code === 'ENOENT' ? 'missing' : `unreadable: ${error.message}`,
    );
    if (actual === seeded.get(imageId)) good++;
    else
      term.err(`NOT verified: ${node}/images/${imageId}: sha256 ${actual}, expected ${seeded.get(imageId)}`);
  }
  return { ok: good === targets.length, good, total: targets.length };
}
