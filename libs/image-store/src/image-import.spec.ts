import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { ReasonError } from '@app/contracts';
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
    it('publishes a file with its size and sha256 and no source node', async () => {
      const staging = path.join(root, 'staging.bin');
      const sha256 = await writeRandomFile(staging, MEBIBYTE + 1);
      const meta = await store.imports.importImage('node-a', IMAGE, staging);
      expect(meta).toMatchObject({ v: 1, imageId: IMAGE, size: MEBIBYTE + 1, sha256 });
      expect(meta.source).toEqual({ via: 'file' });
      expect(meta.attemptId).toMatch(/^import-/);
      expect(await store.copies.verifiedImage('node-a', IMAGE, { sha256 })).toEqual(meta);
      expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
    });

    it('refuses bytes that do not match the expected sha256: nothing published, no partial left', async () => {
      const staging = path.join(root, 'staging.bin');
      await writeRandomFile(staging, 4096);
      await expectConductorError(
        store.imports.importImage('node-a', IMAGE, staging, { expected: { sha256: 'ab'.repeat(32) } }),
        'CHECKSUM_MISMATCH',
      );
      expect(await store.copies.verifiedImage('node-a', IMAGE)).toBeUndefined();
      expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
    });

    it('answers SOURCE_MISSING for a missing file', async () => {
      await expectConductorError(
        store.imports.importImage('node-a', IMAGE, path.join(root, 'nope')),
        'SOURCE_MISSING',
      );
    });
  });

  describe('importStream', () => {
    it('publishes a stream of chunks, verified, with via origin and the fencing token', async () => {
      const parts = [Buffer.alloc(1000, 1), Buffer.alloc(24, 2)];
      const sha256 = createHash('sha256').update(Buffer.concat(parts)).digest('hex');
      async function* chunks() {
        yield* parts;
      }
      const meta = await store.imports.importStream('node-a', IMAGE, chunks(), 'download of x', {
        expected: { sha256 },
        fencingToken: 7,
        requestId: 'r-1',
      });
      expect(meta).toMatchObject({
        size: 1024,
        sha256,
        fencingToken: 7,
        source: { via: 'origin', requestId: 'r-1' },
      });
      expect(await store.copies.verifiedImage('node-a', IMAGE, { sha256 })).toEqual(meta);
    });

    it("passes a stream's own error through and leaves nothing behind", async () => {
      async function* chunks() {
        yield Buffer.alloc(100);
        throw new ReasonError('IO_ERROR', 'the origin hung up');
      }
      await expectConductorError(
        store.imports.importStream('node-a', IMAGE, chunks(), 'download of x'),
        'IO_ERROR',
      );
      expect(await store.copies.verifiedImage('node-a', IMAGE)).toBeUndefined();
      expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
    });
  });
});
