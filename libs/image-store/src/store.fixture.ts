import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, expect } from 'vitest';
import { type ReasonError, isReasonError } from '@app/contracts';
import { exists, listDir, rejectionOf, writeRandomFile } from '../../../test/support/image-store-fixtures';
import { makeTempDir, removeDir } from '../../../test/support/temp-dirs';
import type { CopyImageOutcome, CopyImageRequest } from './copy-pipeline';
import { ImageStore } from './image-store';

export const IMAGE = 'ubuntu-24.04.qcow2';

/**
 * The image store specs' common ground (call inside a describe): a fresh root with two registered nodes
 * per test, no warning left unexpected, and the helpers the specs of every part use.
 */
export function useStoreFixture() {
  const fixture = {
    root: '',
    store: undefined as unknown as ImageStore,
    warnings: [] as string[],

    /** Publishes an image of `bytes` bytes on `node` and returns its sha256. */
    async seed(node: string, bytes: number, imageId = IMAGE): Promise<string> {
      const staging = path.join(fixture.root, `staging-${imageId}`);
      const sha256 = await writeRandomFile(staging, bytes);
      await fixture.store.imports.importImage(node, imageId, staging);
      await fsp.rm(staging);
      return sha256;
    },

    copy(overrides: Partial<CopyImageRequest> = {}): Promise<CopyImageOutcome> {
      return fixture.store.copies.copyImage({
        imageId: IMAGE,
        source: 'node-a',
        destination: 'node-b',
        attemptId: 'attempt-1',
        ...overrides,
      });
    },

    async expectConductorError(promise: Promise<unknown>, code: ReasonError['code']): Promise<ReasonError> {
      const error = await rejectionOf(promise);
      expect(isReasonError(error) ? error.code : error).toBe(code);
      return error as ReasonError;
    },

    /** Nothing published at the destination and no partial copy left behind. */
    async expectNothingAtDestination(node = 'node-b', imageId = IMAGE): Promise<void> {
      expect(await exists(fixture.store.entries.imagePath(node, imageId))).toBe(false);
      expect(await exists(fixture.store.entries.metaPath(node, imageId))).toBe(false);
      expect(await listDir(fixture.store.nodeLayout(node).tmp)).toEqual([]);
    },
  };

  beforeEach(async () => {
    fixture.root = await makeTempDir('image-store');
    fixture.warnings.length = 0;
    fixture.store = new ImageStore({
      root: fixture.root,
      onWarning: (message) => fixture.warnings.push(message),
    });
    // A copy never creates a node's folder: the nodes of these tests are registered first.
    for (const node of ['node-a', 'node-b'])
      await fixture.store.markers.registerNode(node, 'image-store.spec');
  });

  afterEach(async () => {
    await removeDir(fixture.root);
    expect(fixture.warnings).toEqual([]);
  });

  return fixture;
}
