import { promises as fsp } from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import type { ImageStore } from './image-store';
import { IMAGE, useStoreFixture } from './store.fixture';

/** Reading one image's meta through CacheEntries; each other job of the cache has a spec beside its file. */
describe('CacheEntries', () => {
  const fx = useStoreFixture();
  const { warnings, seed, copy, expectConductorError, expectNothingAtDestination } = fx;
  let store: ImageStore;
  beforeEach(() => {
    store = fx.store;
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
});
