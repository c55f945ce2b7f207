import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { InvalidFieldError } from '@app/contracts';
import { ImageStore } from './image-store';
import { IMAGE, useStoreFixture } from './store.fixture';

describe('ImageStore', () => {
  const fx = useStoreFixture();
  let root: string;
  let store: ImageStore;
  beforeEach(() => {
    ({ root, store } = fx);
  });

  describe('layout', () => {
    it('places images, meta, locks and tmp under <root>/<node>/', () => {
      const layout = store.nodeLayout('node-a');
      expect(layout).toEqual({
        node: 'node-a',
        dir: path.join(root, 'node-a'),
        images: path.join(root, 'node-a', 'images'),
        locks: path.join(root, 'node-a', 'locks'),
        tmp: path.join(root, 'node-a', 'tmp'),
        pinned: path.join(root, 'node-a', 'pinned'),
        used: path.join(root, 'node-a', 'used'),
        draining: path.join(root, 'node-a', 'draining'),
        marker: path.join(root, 'node-a', 'node.json'),
      });
      expect(store.entries.imagePath('node-a', 'img.v1.raw')).toBe(
        path.join(root, 'node-a', 'images', 'img.v1.raw'),
      );
      expect(store.entries.metaPath('node-a', 'img.v1.raw')).toBe(
        path.join(root, 'node-a', 'images', 'img.v1.raw.meta.json'),
      );
    });

    it('resolves a relative root to an absolute one', () => {
      const relative = new ImageStore({ root: path.relative(process.cwd(), root) });
      expect(relative.root).toBe(root);
    });
  });

  describe('ids on the other methods', () => {
    it.each(['../x', '', 'n'.repeat(200), 'a\nb', 'a/b', '.', '..', 'nöde', 'node\u0430'])(
      'refuses node id %j',
      (node) => {
        expect(() => store.nodeLayout(node)).toThrow(InvalidFieldError);
        expect(() => store.nodeLayout(node)).toThrow(/^node: /);
        expect(() => store.entries.imagePath(node, IMAGE)).toThrow(/^node: /);
      },
    );

    it('refuses bad image ids with the field named', async () => {
      expect(() => store.entries.imagePath('node-a', '../../etc/passwd')).toThrow(/^imageId: /);
      expect(() => store.entries.metaPath('node-a', 'a\u0000b')).toThrow(/^imageId: /);
      await expect(store.entries.readMeta('node-a', '..')).rejects.toThrow(/^imageId: /);
      await expect(store.entries.removeLeftoverTmp('node-a', 'a/b')).rejects.toThrow(/^imageId: /);
      await expect(store.copies.touchLastUsed('../a', IMAGE)).rejects.toThrow(/^node: /);
      await expect(store.imports.importImage('node-a', 'x'.repeat(129), '/dev/null')).rejects.toThrow(
        /^imageId: /,
      );
    });
  });
});
