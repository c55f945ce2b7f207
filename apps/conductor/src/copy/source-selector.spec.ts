import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore } from '@app/image-store';
import { SourceSelector } from './source-selector';

describe('SourceSelector', () => {
  let root: string;
  let store: ImageStore;
  let sha256: string;

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-selector-'));
    store = new ImageStore({ root, fsync: false });
    const file = path.join(root, 'seed');
    await fsp.writeFile(file, 'image bytes');
    for (const node of ['node-a', 'node-c']) sha256 = (await store.importImage(node, 'img', file)).sha256;
    await fsp.mkdir(path.join(root, 'node-b'));
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('picks the holder with the fewest reads running here', async () => {
    const selector = new SourceSelector(store);
    const endRead = selector.beginRead('node-a');
    expect((await selector.pick({ imageId: 'img', destination: 'node-b', sha256 })).node).toBe('node-c');
    endRead();
    expect((await selector.pick({ imageId: 'img', destination: 'node-b' })).node).toBe('node-a');
  });

  it('tells a missing image from a holder of other bytes', async () => {
    const selector = new SourceSelector(store);
    const code = (job: Parameters<SourceSelector['pick']>[0]) => selector.pick(job).then(() => 'picked', (e: { code: string }) => e.code);
    expect(await code({ imageId: 'other', destination: 'node-b' })).toBe('SOURCE_MISSING');
    expect(await code({ imageId: 'img', destination: 'node-b', source: 'node-b' })).toBe('SOURCE_MISSING');
    expect(await code({ imageId: 'img', destination: 'node-b', source: 'node-a', sha256: '0'.repeat(64) })).toBe('CHECKSUM_MISMATCH');
    expect(await code({ imageId: 'img', destination: 'node-b', sha256: '0'.repeat(64) })).toBe('CHECKSUM_MISMATCH');
    expect(await code({ imageId: 'img', destination: 'node-b', source: 'node-a', size: 1 })).toBe('SIZE_MISMATCH');
    expect(await code({ imageId: 'img', destination: 'node-b', sha256, size: 11 })).toBe('picked');
  });
});
