import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CopyPriority } from '@app/contracts';
import { ImageStore } from '@app/image-store';
import { MEBIBYTE, sha256OfFile, writeRandomFile } from '../../../../test/support/image-store-fixtures';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import { byteRateCapsSchema } from '../config/byte-rate-caps';
import { NodeBandwidth } from './node-bandwidth';

const SIZE = 12 * MEBIBYTE;

describe('NodeBandwidth with real copies', () => {
  let root: string;
  let store: ImageStore;
  const images: Record<string, string> = {};

  beforeEach(async () => {
    root = await makeTempDir('node-bandwidth');
    store = new ImageStore({ root, fsync: false });
    for (const node of ['node-a', 'node-b', 'node-c']) await store.markers.registerNode(node, 'spec');
    for (const [node, imageId] of [
      ['node-a', 'bg.img'],
      ['node-a', 'vm.img'],
      ['node-c', 'other.img'],
    ] as const) {
      const staging = path.join(root, `staging-${imageId}`);
      images[imageId] = await writeRandomFile(staging, SIZE);
      await store.imports.importImage(node, imageId, staging);
      await fsp.rm(staging);
    }
  });

  afterEach(async () => {
    await removeDir(root);
  });

  it('caps the reads of a node, interactive copies first, and other nodes are not held up', async () => {
    // Only node-a's reads are capped: 6 MiB/s, so its two copies need about 4 s together.
    const bandwidth = new NodeBandwidth({
      read: byteRateCapsSchema.parse('node-a=6Mi'),
      write: byteRateCapsSchema.parse('0'),
      backgroundRead: byteRateCapsSchema.parse('0'),
      backgroundWrite: byteRateCapsSchema.parse('0'),
    });
    const finished: string[] = [];
    const done: Record<string, number> = {};
    const copy = (imageId: string, source: string, priority: CopyPriority) =>
      store.copies
        .copyImage({
          imageId,
          source,
          destination: 'node-b',
          attemptId: `attempt-${imageId.replace('.', '-')}`,
          pace: bandwidth.pace(source, 'node-b', () => priority),
          onProgress: (bytes) => (done[imageId] = bytes),
        })
        .then((outcome) => {
          finished.push(imageId);
          // What the others had copied when this one was done.
          return { outcome, othersAtEnd: { ...done } };
        });

    const background = copy('bg.img', 'node-a', 'background');
    // Let the background copy start and get its first grants before the VM's copy arrives.
    while ((done['bg.img'] ?? 0) < MEBIBYTE) await new Promise((r) => setTimeout(r, 5));
    const interactive = copy('vm.img', 'node-a', 'interactive');
    const uncapped = copy('other.img', 'node-c', 'background');

    const [bg, vm, other] = await Promise.all([background, interactive, uncapped]);

    expect(finished).toEqual(['other.img', 'vm.img', 'bg.img']);
    // While the interactive copy waited for node-a, the background one got at most the grants it
    // already held (its read in flight and the one read ahead).
    expect(vm.othersAtEnd['bg.img']).toBeLessThanOrEqual(4 * MEBIBYTE);
    expect(other.othersAtEnd['vm.img'] ?? 0).toBeLessThan(SIZE);
    for (const [name, result] of [
      ['bg.img', bg],
      ['vm.img', vm],
      ['other.img', other],
    ] as const) {
      expect(result.outcome.sha256).toBe(images[name]);
      expect(await sha256OfFile(store.entries.imagePath('node-b', name))).toBe(images[name]);
    }
    // Every byte read from node-a went through its limiter; node-c has none (no cap, no bookkeeping).
    expect(bandwidth.view()).toEqual([
      {
        node: 'node-a',
        direction: 'read',
        bytesPerSecond: 6 * MEBIBYTE,
        backgroundBytesPerSecond: 0,
        bytes: 2 * SIZE,
      },
    ]);
  });
});

describe('byteRateCapsSchema (NODE_READ_BPS and friends)', () => {
  it('reads one rate for every node, or node=rate pairs with a default', () => {
    expect(byteRateCapsSchema.parse('0')).toEqual({ fallback: 0, nodes: {} });
    expect(byteRateCapsSchema.parse('50Mi')).toEqual({ fallback: 50 * MEBIBYTE, nodes: {} });
    expect(byteRateCapsSchema.parse('node-a=20M, node-b=0,*=1Gi')).toEqual({
      fallback: 1024 ** 3,
      nodes: { 'node-a': 20e6, 'node-b': 0 },
    });
  });

  it.each([
    ['fast', /"fast" is not a rate/],
    ['-5', /"-5" is not a rate/],
    ['1.5M', /"1.5M" is not a rate/],
    ['node-a=', /"node-a=" is not a rate/],
    ['../x=5', /"..\/x" is not a node id/],
    ['99999999999Gi', /too large/],
  ])('refuses %s, naming the part and the expected form', (text, reason) => {
    const result = byteRateCapsSchema.safeParse(text);
    expect(result.success).toBe(false);
    expect(result.error!.issues[0]!.message).toMatch(reason);
    expect(result.error!.issues[0]!.message).toContain('expected bytes per second');
  });
});
