import { describe, expect, it } from 'vitest';
import { ImageStore } from '@app/image-store';
import { makeTempDir, removeDir } from '../../../../test/support/temp-dirs';
import { planJobNodes } from './job-planner';

describe('planJobNodes', () => {
  it('all: every registered node; percent: the same share for the same job id, rounded up', async () => {
    const root = await makeTempDir('planner');
    try {
      const store = new ImageStore({ root, fsync: false });
      const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`);
      for (const node of nodes) await store.markers.registerNode(node, 'spec');
      const base = { v: 1 as const, type: 'precache' as const, imageId: 'img', all: true as const };
      expect(await planJobNodes(store, { ...base, jobId: 'j' })).toEqual(nodes);
      const quarter = await planJobNodes(store, { ...base, jobId: 'j', percent: 25 });
      expect(quarter).toHaveLength(3);
      expect(await planJobNodes(store, { ...base, jobId: 'j', percent: 25 })).toEqual(quarter);
      expect(await planJobNodes(store, { ...base, jobId: 'j', percent: 0.1 })).toHaveLength(1);
      expect(await planJobNodes(store, { ...base, jobId: 'j', nodes: undefined, percent: 100 })).toEqual(
        nodes,
      );
      // An explicit list is kept as given, unknown nodes included (they get skipped-unknown).
      expect(
        await planJobNodes(store, { v: 1, type: 'purge', jobId: 'j', imageId: 'img', nodes: ['x', 'n1'] }),
      ).toEqual(['x', 'n1']);
    } finally {
      await removeDir(root);
    }
  });
});
