import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { EPOCH_NAME } from './key-directory';

/**
 * For specs that lay out a key folder by hand (a dead holder's leftovers): its epoch, dated `floorUs`
 * microseconds after 1970, so that generations from `floorUs` on count.
 */
export async function makeEpoch(keyDir: string, floorUs = 0): Promise<void> {
  const epoch = path.join(keyDir, EPOCH_NAME);
  await fsp.mkdir(epoch, { recursive: true });
  await fsp.utimes(epoch, floorUs / 1e6, floorUs / 1e6);
}
