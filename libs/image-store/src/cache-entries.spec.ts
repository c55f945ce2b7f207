import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { MEBIBYTE, exists, listDir } from '../../../test/support/image-store-fixtures';
import { ImageStore } from './image-store';
import { IMAGE, useStoreFixture } from './store.fixture';

describe('CacheEntries', () => {
  const fx = useStoreFixture();
  const { warnings, seed, copy, expectConductorError, expectNothingAtDestination } = fx;
  let root: string;
  let store: ImageStore;
  beforeEach(() => {
    ({ root, store } = fx);
  });

  describe('readMeta', () => {
    const valid = (): Record<string, unknown> => ({
      v: 1,
      imageId: IMAGE,
      size: 10,
      sha256: 'ab'.repeat(32),
      createdAt: '2025-01-02T03:04:05.000Z',
      lastUsedAt: '2025-01-02T03:04:05.000Z',
    });

    async function writeMeta(content: string): Promise<void> {
      await fsp.mkdir(store.nodeLayout('node-a').images, { recursive: true });
      await fsp.writeFile(store.entries.metaPath('node-a', IMAGE), content);
    }

    it('reads valid meta', async () => {
      await writeMeta(JSON.stringify({ ...valid(), source: { node: 'node-z' }, unknownField: true }));
      expect(await store.entries.readMeta('node-a', IMAGE)).toEqual({
        ...valid(),
        source: { node: 'node-z' },
      });
    });

    it('answers undefined for a missing meta file or node', async () => {
      expect(await store.entries.readMeta('node-a', IMAGE)).toBeUndefined();
    });

    /** The one warning about the meta file: it names the file and what is wrong with it. */
    function expectOneWarning(problem: RegExp): void {
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(`invalid file ${store.entries.metaPath('node-a', IMAGE)}: `);
      expect(warnings[0]).toMatch(problem);
      warnings.length = 0;
    }

    it.each([
      ['garbage', '{"v":1,', /: not JSON \(/],
      ['not an object', '"hello"', /: \(file\): /],
      ['null', 'null', /: \(file\): /],
      ['empty', '', /: not JSON \(/],
      ['a size that is a string', JSON.stringify({ ...valid(), size: '10' }), /: size: /],
      ['a negative size', JSON.stringify({ ...valid(), size: -1 }), /: size: /],
      ['a fractional size', JSON.stringify({ ...valid(), size: 1.5 }), /: size: /],
      ['another version', JSON.stringify({ ...valid(), v: 2 }), /: v: /],
      ['a bad sha256', JSON.stringify({ ...valid(), sha256: 'zz'.repeat(32) }), /: sha256: /],
      ['an uppercase sha256', JSON.stringify({ ...valid(), sha256: 'AB'.repeat(32) }), /: sha256: /],
      ['a bad date', JSON.stringify({ ...valid(), createdAt: 'yesterday' }), /: createdAt: /],
      [
        'another image id',
        JSON.stringify({ ...valid(), imageId: 'other' }),
        /: imageId: is "other", the file is named for /,
      ],
      ['a bad source node', JSON.stringify({ ...valid(), source: { node: '../x' } }), /: source\.node: /],
      ['a missing field', JSON.stringify({ ...valid(), sha256: undefined }), /: sha256: /],
      [
        'a huge file',
        JSON.stringify({ ...valid(), padding: 'x'.repeat(100_000) }),
        /: larger than 65536 bytes/,
      ],
    ])(
      'answers undefined for %s, with a warning naming the file and the field',
      async (_name, content, problem) => {
        await writeMeta(content);
        expect(await store.entries.readMeta('node-a', IMAGE)).toBeUndefined();
        expectOneWarning(problem);
      },
    );

    it('answers undefined when a folder sits at the meta path', async () => {
      await fsp.mkdir(store.entries.metaPath('node-a', IMAGE), { recursive: true });
      expect(await store.entries.readMeta('node-a', IMAGE)).toBeUndefined();
      expectOneWarning(/: not a regular file/);
    });

    it('reports a meta file without lastUsedAt once per version, and says why its image is not used', async () => {
      const sha256 = await seed('node-a', 100);
      const metaPath = store.entries.metaPath('node-a', IMAGE);
      const { lastUsedAt: _dropped, ...withoutLastUse } = JSON.parse(
        await fsp.readFile(metaPath, 'utf8'),
      ) as Record<string, unknown>;
      await fsp.writeFile(metaPath, JSON.stringify(withoutLastUse));
      await fsp.utimes(metaPath, new Date(1_000_000), new Date(1_000_000));

      // Every way of reading it sees it as unverified; it is reported once, not on every read.
      const refused = await expectConductorError(copy(), 'SOURCE_MISSING');
      expect(refused.message).toContain('meta file invalid: lastUsedAt: ');
      expect(await store.copies.verifiedImage('node-a', IMAGE, { sha256 })).toBeUndefined();
      expect(await store.entries.inspectImage('node-a', IMAGE)).toEqual({
        problem: expect.stringMatching(/^meta file invalid: lastUsedAt: /),
      });
      expect(await store.entries.listEntries('node-a')).toEqual([
        {
          imageId: IMAGE,
          problem: expect.stringMatching(/^meta file invalid: lastUsedAt: /),
          bytes: 100,
          modifiedMs: expect.any(Number),
        },
      ]);
      expectOneWarning(/: lastUsedAt: .*; image ubuntu-24\.04\.qcow2 on node node-a is not used/);

      // A new version of the file (another mtime) is reported again.
      await fsp.utimes(metaPath, new Date(2_000_000), new Date(2_000_000));
      expect(await store.entries.readMeta('node-a', IMAGE)).toBeUndefined();
      expect(await store.entries.readMeta('node-a', IMAGE)).toBeUndefined();
      expectOneWarning(/: lastUsedAt: /);
      await expectNothingAtDestination();
    });
  });

  describe('listNodes, listImages', () => {
    it('lists node folders and verified images, ignoring anything else', async () => {
      await seed('node-b', 10, 'img.b');
      await seed('node-a', 10, 'img.a2');
      await seed('node-a', 20, 'img.a1');
      await seed('node-a', 30, 'img.broken');
      await fsp.rm(store.entries.imagePath('node-a', 'img.broken'));
      await fsp.writeFile(path.join(root, 'a-file'), '');
      await fsp.mkdir(path.join(root, '.hidden'));
      await fsp.mkdir(path.join(root, 'bad name'));
      await fsp.writeFile(path.join(store.nodeLayout('node-a').images, 'stray.meta.json'), '{}');

      expect(await store.entries.listNodes()).toEqual(['node-a', 'node-b']);
      const images = await store.entries.listImages('node-a');
      expect(images.map((meta) => [meta.imageId, meta.size])).toEqual([
        ['img.a1', 20],
        ['img.a2', 10],
      ]);
      expect(warnings).toEqual([expect.stringContaining('/node-a/images/stray.meta.json: v: ')]);
      warnings.length = 0;
      expect(await store.entries.listImages('node-c')).toEqual([]);
      // The cheap listing (one readdir) names every meta file, verified or not.
      expect(await store.entries.listImageIds('node-a')).toEqual(['img.a1', 'img.a2', 'img.broken', 'stray']);
      expect(await store.entries.listImageIds('node-c')).toEqual([]);
    });

    it('folder signatures: changed by an image published or deleted and by a node added; none when missing', async () => {
      expect(await store.entries.imagesFolderStamp('node-a')).toBeUndefined();
      await seed('node-a', 10, 'img.a1');
      const first = await store.entries.imagesFolderStamp('node-a');
      expect(first).toEqual(expect.any(String));
      expect(await store.entries.imagesFolderStamp('node-a')).toBe(first);
      await seed('node-a', 10, 'img.a2');
      const second = await store.entries.imagesFolderStamp('node-a');
      expect(second).not.toBe(first);
      await fsp.rm(store.entries.metaPath('node-a', 'img.a1'));
      expect(await store.entries.imagesFolderStamp('node-a')).not.toBe(second);
      const root0 = await store.entries.rootStamp();
      await seed('node-b', 10, 'img.b');
      expect(await store.entries.rootStamp()).not.toBe(root0);
      expect(await new ImageStore({ root: path.join(root, 'missing') }).entries.rootStamp()).toBeUndefined();
    });

    it('lists nothing for a missing root', async () => {
      expect(await new ImageStore({ root: path.join(root, 'missing') }).entries.listNodes()).toEqual([]);
    });
  });

  describe('removeLeftoverTmp', () => {
    async function leave(names: string[]): Promise<string> {
      const tmp = store.nodeLayout('node-b').tmp;
      await fsp.mkdir(tmp, { recursive: true });
      for (const name of names) await fsp.writeFile(path.join(tmp, name), name);
      return tmp;
    }

    it('removes the partial copies of one image only', async () => {
      const tmp = await leave([
        'img~attempt-1.part',
        'img~meta-123.part',
        'img.v2~attempt-1.part', // an id with 'img' as prefix
        'other~a.b.c.part',
        'unrelated.txt',
      ]);
      expect(await store.entries.removeLeftoverTmp('node-b', 'img')).toBe(2);
      expect(await listDir(tmp)).toEqual(['img.v2~attempt-1.part', 'other~a.b.c.part', 'unrelated.txt']);
      expect(await store.entries.removeLeftoverTmp('node-b', 'img.v2')).toBe(1);
      expect(await store.entries.removeLeftoverTmp('node-b', 'img')).toBe(0);
    });

    it('removes every file in tmp when no image is named, and leaves folders alone', async () => {
      const tmp = await leave(['img~attempt-1.part', 'other~x.part', 'unrelated.txt']);
      await fsp.mkdir(path.join(tmp, 'a-folder'));
      expect(await store.entries.removeLeftoverTmp('node-b')).toBe(3);
      expect(await listDir(tmp)).toEqual(['a-folder']);
    });

    it('keeps recent files when olderThanMs is given', async () => {
      const tmp = await leave(['old~a.part', 'new~a.part']);
      const anHourAgo = new Date(Date.now() - 3_600_000);
      await fsp.utimes(path.join(tmp, 'old~a.part'), anHourAgo, anHourAgo);
      expect(await store.entries.removeLeftoverTmp('node-b', undefined, { olderThanMs: 60_000 })).toBe(1);
      expect(await listDir(tmp)).toEqual(['new~a.part']);
    });

    it('answers 0 when the node has no tmp folder', async () => {
      expect(await store.entries.removeLeftoverTmp('node-b')).toBe(0);
    });
  });

  describe('deleteImage and listEntries (the cache cleaner, under the exclusive lock)', () => {
    it('removes meta, image and partial copies, and the image is no longer verified', async () => {
      await seed('node-a', MEBIBYTE + 5);
      const tmp = store.nodeLayout('node-a').tmp;
      await fsp.writeFile(path.join(tmp, `${IMAGE}~dead-attempt.part`), 'partial');
      await fsp.writeFile(path.join(tmp, 'other.img~x.part'), 'other');
      expect(await store.entries.deleteImage('node-a', IMAGE)).toEqual({
        removedMeta: true,
        removedImage: true,
        bytes: MEBIBYTE + 5,
        tmpRemoved: 1,
      });
      expect(await store.copies.verifiedImage('node-a', IMAGE)).toBeUndefined();
      expect(await listDir(store.nodeLayout('node-a').images)).toEqual([]);
      expect(await listDir(tmp)).toEqual(['other.img~x.part']);
    });

    it('finishes an interrupted delete from any partial state', async () => {
      await seed('node-a', 100, 'meta-only');
      await fsp.rm(store.entries.imagePath('node-a', 'meta-only'));
      await seed('node-a', 200, 'image-only');
      await fsp.rm(store.entries.metaPath('node-a', 'image-only'));
      expect(await store.entries.deleteImage('node-a', 'meta-only')).toEqual({
        removedMeta: true,
        removedImage: false,
        bytes: 0,
        tmpRemoved: 0,
      });
      expect(await store.entries.deleteImage('node-a', 'image-only')).toEqual({
        removedMeta: false,
        removedImage: true,
        bytes: 200,
        tmpRemoved: 0,
      });
      expect(await store.entries.deleteImage('node-a', 'never-there')).toEqual({
        removedMeta: false,
        removedImage: false,
        bytes: 0,
        tmpRemoved: 0,
      });
      expect(await store.entries.deleteImage('node-new', IMAGE)).toMatchObject({
        removedMeta: false,
        removedImage: false,
      });
      expect(await listDir(store.nodeLayout('node-a').images)).toEqual([]);
    });

    it('refuses a folder at the image path and bad ids', async () => {
      await fsp.mkdir(store.entries.imagePath('node-a', IMAGE), { recursive: true });
      await expectConductorError(store.entries.deleteImage('node-a', IMAGE), 'IO_ERROR');
      expect(await exists(store.entries.imagePath('node-a', IMAGE))).toBe(true);
      await expectConductorError(store.entries.deleteImage('node-a', '../node-b/img'), 'INVALID_REQUEST');
      await expectConductorError(store.entries.deleteImage('..', IMAGE), 'INVALID_REQUEST');
    });

    it('lists verified images and orphans with their bytes on disk', async () => {
      await seed('node-a', 30, 'ok');
      await seed('node-a', 40, 'no-meta');
      await fsp.rm(store.entries.metaPath('node-a', 'no-meta'));
      await seed('node-a', 50, 'no-image');
      await fsp.rm(store.entries.imagePath('node-a', 'no-image'));
      await seed('node-a', 60, 'truncated');
      await fsp.truncate(store.entries.imagePath('node-a', 'truncated'), 6);
      await fsp.writeFile(path.join(store.nodeLayout('node-a').images, 'bad name'), '');
      const entries = await store.entries.listEntries('node-a');
      expect(entries.map((e) => [e.imageId, e.meta?.size, e.bytes, e.modifiedMs === undefined])).toEqual([
        ['no-image', undefined, 0, true],
        ['no-meta', undefined, 40, false],
        ['ok', 30, 30, false],
        ['truncated', undefined, 6, false],
      ]);
      expect(await store.entries.listEntries('node-z')).toEqual([]);
    });

    it('lists hidden files a network mount left (never entries) and removes them only once old', async () => {
      await seed('node-a', 30, 'ok');
      const images = store.nodeLayout('node-a').images;
      await fsp.writeFile(path.join(images, '.fuse_hidden0000000400000001'), '{"v":1}');
      await fsp.writeFile(path.join(images, '.nfs00000000001234'), 'ab');
      await fsp.writeFile(path.join(images, '.other'), '');
      expect((await store.entries.listEntries('node-a')).map((e) => e.imageId)).toEqual(['ok']);
      const litter = await store.entries.listLitter('node-a');
      expect(litter.map((l) => [l.name, l.bytes])).toEqual([
        ['.fuse_hidden0000000400000001', 7],
        ['.nfs00000000001234', 2],
      ]);
      expect(await store.entries.removeLitter('node-a', 60_000)).toEqual([]);
      expect(await store.entries.removeLitter('node-a', 60_000, Date.now() + 120_000)).toHaveLength(2);
      expect((await fsp.readdir(images)).sort()).toEqual(['.other', 'ok', 'ok.meta.json']);
      expect(await store.entries.listLitter('node-z')).toEqual([]);
    });

    it('a late delete (the judged entry published again meanwhile) leaves the new image in place', async () => {
      await seed('node-a', 30, 'img');
      const judged = await store.entries.entry('node-a', 'img');
      // Another holder took the lock over, deleted and published the image again (other bytes).
      await store.entries.deleteImage('node-a', 'img');
      await seed('node-a', 40, 'img');
      const republished = await store.entries.entry('node-a', 'img');
      expect(await store.entries.deleteImage('node-a', 'img', judged)).toMatchObject({
        changed: true,
        removedMeta: false,
        removedImage: false,
      });
      expect(await store.entries.entry('node-a', 'img')).toEqual(republished);
      expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
    });

    it('a late delete that finds the judged meta beside a new image removes the meta only', async () => {
      await seed('node-a', 30, 'img');
      const judged = await store.entries.entry('node-a', 'img');
      // A publish between its rename and its meta write: new bytes, the old meta still there.
      const file = store.entries.imagePath('node-a', 'img');
      await fsp.writeFile(`${file}.new`, Buffer.alloc(30, 9));
      await fsp.utimes(
        `${file}.new`,
        new Date(judged.modifiedMs! + 5_000),
        new Date(judged.modifiedMs! + 5_000),
      );
      await fsp.rename(`${file}.new`, file);
      expect(await store.entries.deleteImage('node-a', 'img', judged)).toMatchObject({
        changed: true,
        removedMeta: true,
        removedImage: false,
      });
      expect(await fsp.readFile(file)).toEqual(Buffer.alloc(30, 9));
      expect(await exists(store.entries.metaPath('node-a', 'img'))).toBe(false);
    });

    it('deletes the judged entry itself, orphans included', async () => {
      await seed('node-a', 30, 'img');
      await seed('node-a', 20, 'orphan');
      await fsp.rm(store.entries.metaPath('node-a', 'orphan'));
      for (const id of ['img', 'orphan']) {
        const judged = await store.entries.entry('node-a', id);
        expect((await store.entries.deleteImage('node-a', id, judged)).changed).toBeUndefined();
        expect(await store.entries.entry('node-a', id)).toEqual({
          imageId: id,
          problem: expect.any(String),
          bytes: 0,
        });
      }
      expect(await fsp.readdir(store.nodeLayout('node-a').images)).toEqual([]);
      expect(await listDir(store.nodeLayout('node-a').tmp)).toEqual([]);
    });
  });
});
