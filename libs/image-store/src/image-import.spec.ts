import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { MEBIBYTE, listDir, writeRandomFile } from '../../../test/support/image-store-fixtures';
import type { ImageStore } from './image-store';
import { IMAGE, useStoreFixture } from './store.fixture';

describe('ImageImport', () => {
  const fx = useStoreFixture();
  const { expectConductorError } = fx;
  let root: string;
  let store: ImageStore;
  beforeEach(() => {
    ({ root, store } = fx);
  });

  describe('importImage', () => {
    it('publishes a file with its size and sha256 and no source', async () => {
      const staging = path.join(root, 'staging.bin');
      const sha256 = await writeRandomFile(staging, MEBIBYTE + 1);
      const meta = await store.imports.importImage('node-a', IMAGE, staging);
      expect(meta).toMatchObject({ v: 1, imageId: IMAGE, size: MEBIBYTE + 1, sha256 });
      expect(meta.source).toBeUndefined();
      expect(meta.attemptId).toMatch(/^import-/);
      expect(await store.copies.verifiedImage('node-a', IMAGE, { sha256 })).toEqual(meta);
      expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
    });

    it('answers SOURCE_MISSING for a missing file', async () => {
      await expectConductorError(
        store.imports.importImage('node-a', IMAGE, path.join(root, 'nope')),
        'SOURCE_MISSING',
      );
    });
  });
});
