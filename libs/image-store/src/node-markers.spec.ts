import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { exists, listDir } from '../../../test/support/image-store-fixtures';
import type { ImageStore } from './image-store';
import { IMAGE, useStoreFixture } from './store.fixture';

describe('NodeMarkers', () => {
  const fx = useStoreFixture();
  const { warnings, seed, copy, expectConductorError } = fx;
  let root: string;
  let store: ImageStore;
  beforeEach(() => {
    ({ root, store } = fx);
  });

  describe('node registration', () => {
    it('registers a node with a validated marker, keeps an existing one, and unregisters it', async () => {
      const added = await store.markers.registerNode('node-new', 'ops@host');
      expect(added).toEqual({
        created: true,
        marker: { v: 1, node: 'node-new', registeredAt: expect.any(String), registeredBy: 'ops@host' },
      });
      expect(JSON.parse(await fsp.readFile(path.join(root, 'node-new', 'node.json'), 'utf8'))).toEqual(
        added.marker,
      );
      expect(await listDir(path.join(root, 'node-new'))).toEqual(['node.json']); // no tmp file left
      expect(await store.markers.registerNode('node-new', 'someone else')).toEqual({
        created: false,
        marker: added.marker,
      });
      expect(await store.markers.nodeRegistration('node-new')).toEqual({
        registered: true,
        marker: added.marker,
      });
      expect(await store.markers.unregisterNode('node-new')).toBe(true);
      expect(await store.markers.unregisterNode('node-new')).toBe(false);
      expect(await store.markers.nodeRegistration('node-new')).toEqual({
        registered: false,
        problem: `no marker ${path.join(root, 'node-new', 'node.json')}`,
      });
      expect(await store.markers.isRegistered('node-never')).toBe(false);
      expect(await listDir(root)).toEqual(['node-a', 'node-b', 'node-new']); // asking created nothing
    });

    it.each([
      ['not JSON', '{', /: not JSON \(/],
      [
        'another version',
        JSON.stringify({ v: 2, node: 'node-a', registeredAt: '2026-01-01T00:00:00Z', registeredBy: 'x' }),
        /: v: /,
      ],
      ['no registeredAt', JSON.stringify({ v: 1, node: 'node-a', registeredBy: 'x' }), /: registeredAt: /],
      [
        'a control character in registeredBy',
        JSON.stringify({ v: 1, node: 'node-a', registeredAt: '2026-01-01T00:00:00Z', registeredBy: 'a\nb' }),
        /: registeredBy: must be printable ASCII/,
      ],
      [
        "another node's marker",
        JSON.stringify({ v: 1, node: 'node-b', registeredAt: '2026-01-01T00:00:00Z', registeredBy: 'x' }),
        /: node: is "node-b", the folder is "node-a"/,
      ],
    ])(
      'counts a node with a broken marker (%s) as unknown, with one warning naming the file and the field',
      async (_name, content, problem) => {
        const marker = store.nodeLayout('node-a').marker;
        await fsp.writeFile(marker, content);
        for (let i = 0; i < 3; i++) expect(await store.markers.isRegistered('node-a')).toBe(false);
        expect(warnings).toHaveLength(1);
        expect(warnings[0]).toContain(`invalid file ${marker}: `);
        expect(warnings[0]).toMatch(problem);
        warnings.length = 0;
        // Registering again repairs it.
        expect((await store.markers.registerNode('node-a', 'repair')).created).toBe(true);
        expect(await store.markers.isRegistered('node-a')).toBe(true);
      },
    );

    it('refuses a bad node id or registeredBy, naming the field', async () => {
      await expect(store.markers.registerNode('../x', 'ops')).rejects.toThrow(/^node: /);
      await expect(store.markers.registerNode('node-c', '')).rejects.toThrow(
        /^registeredBy: must not be empty/,
      );
      await expect(store.markers.registerNode('node-c', 'x'.repeat(129))).rejects.toThrow(
        /^registeredBy: must be at most 128/,
      );
      expect(await listDir(root)).toEqual(['node-a', 'node-b']);
    });

    it('never creates the folder of a node a copy or an import names: UNKNOWN_NODE', async () => {
      await seed('node-a', 100);
      const copyError = await expectConductorError(copy({ destination: 'node-typo' }), 'UNKNOWN_NODE');
      expect(copyError.message).toContain(`its folder ${path.join(root, 'node-typo')} does not exist`);
      const staging = path.join(root, 'staging.bin');
      await fsp.writeFile(staging, 'bytes');
      await expectConductorError(store.imports.importImage('node-typo', IMAGE, staging), 'UNKNOWN_NODE');
      await expectConductorError(store.markers.pin('node-typo', IMAGE), 'UNKNOWN_NODE');
      await fsp.rm(staging);
      expect(await listDir(root)).toEqual(['node-a', 'node-b']);
    });
  });

  describe('pins and the draining marker (operator files)', () => {
    it('pins and unpins by a marker file under <node>/pinned/', async () => {
      expect(await store.markers.isPinned('node-a', IMAGE)).toBe(false);
      expect(await store.markers.listPinned('node-a')).toEqual(new Set());
      await store.markers.pin('node-a', IMAGE);
      await store.markers.pin('node-a', IMAGE); // idempotent
      expect(await exists(path.join(root, 'node-a', 'pinned', IMAGE))).toBe(true);
      expect(await store.markers.isPinned('node-a', IMAGE)).toBe(true);
      // An operator may also just mkdir or touch; names that are not image ids are ignored.
      await fsp.mkdir(path.join(root, 'node-a', 'pinned', 'by-hand'));
      await fsp.writeFile(path.join(root, 'node-a', 'pinned', 'bad name'), '');
      expect(await store.markers.listPinned('node-a')).toEqual(new Set([IMAGE, 'by-hand']));
      expect(await store.markers.unpin('node-a', IMAGE)).toBe(true);
      expect(await store.markers.unpin('node-a', 'by-hand')).toBe(true);
      expect(await store.markers.unpin('node-a', IMAGE)).toBe(false);
      expect(await store.markers.isPinned('node-a', IMAGE)).toBe(false);
    });

    it('validates ids before they become paths', async () => {
      await expectConductorError(store.markers.pin('node-a', '../../etc'), 'INVALID_REQUEST');
      await expectConductorError(store.markers.pin('node-a', 'x.meta.json'), 'INVALID_REQUEST');
      await expectConductorError(store.markers.isPinned('../x', IMAGE), 'INVALID_REQUEST');
      await expectConductorError(store.markers.unpin('node-a', ''), 'INVALID_REQUEST');
      expect(await listDir(root)).toEqual(['node-a', 'node-b']);
      expect(await listDir(store.nodeLayout('node-a').dir)).toEqual(['node.json']);
    });

    it('reads the draining marker', async () => {
      expect(await store.markers.isDraining('node-a')).toBe(false);
      await fsp.mkdir(path.join(root, 'node-a'), { recursive: true });
      await fsp.writeFile(store.nodeLayout('node-a').draining, '');
      expect(await store.markers.isDraining('node-a')).toBe(true);
    });
  });
});
