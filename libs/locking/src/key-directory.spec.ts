import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EPOCH_NAME, readKeyDirectory } from './key-directory';

describe('readKeyDirectory', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-keydir-'));
  });
  afterEach(() => fsp.rm(dir, { recursive: true, force: true }));

  /** An epoch whose mtime is `floorUs` microseconds after 1970, as a test can set it. */
  const epochAt = async (floorUs: number) => {
    await fsp.mkdir(path.join(dir, EPOCH_NAME));
    await fsp.utimes(path.join(dir, EPOCH_NAME), floorUs / 1e6, floorUs / 1e6);
  };

  it('has no floor and no newest generation without an epoch, whatever generations it holds', async () => {
    await fsp.mkdir(path.join(dir, 'g-5'));
    expect(await readKeyDirectory(dir)).toMatchObject({
      floor: undefined,
      newest: undefined,
      newestReleased: false,
    });
  });

  it('takes the floor from the epoch mtime in microseconds', async () => {
    await epochAt(1_700_000_000_123_456);
    expect((await readKeyDirectory(dir)).floor).toBe(1_700_000_000_123_456);
  });

  it('counts only generations at or above the floor; the ones below are garbage', async () => {
    await epochAt(40);
    for (const name of ['g-39', 'g-39.released', 'g-40', 'g-40.released', 'g-41'])
      await fsp.mkdir(path.join(dir, name));
    const state = await readKeyDirectory(dir);
    expect(state).toMatchObject({ floor: 40, newest: 41, newestReleased: false });
    expect(state.superseded.sort()).toEqual(['g-39', 'g-39.released', 'g-40', 'g-40.released']);
  });

  it('treats a folder whose generations all lie below the floor as never claimed, and those as garbage', async () => {
    await epochAt(1_000);
    await fsp.mkdir(path.join(dir, 'g-999'));
    const state = await readKeyDirectory(dir);
    expect(state).toMatchObject({ floor: 1_000, newest: undefined });
    expect(state.superseded).toEqual(['g-999']);
  });
});
