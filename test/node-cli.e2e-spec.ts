import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import { describeRun, runIcc } from './support/agent-cli';
import { exists, listDir } from './support/image-store-fixtures';
import { makeTempDir, removeDir } from './support/temp-dirs';

interface NodeRow {
  node: string;
  registered: boolean;
  registeredAt?: string;
  registeredBy?: string;
  problem?: string;
  draining: boolean;
  images: number;
  bytes: number;
}

describe('icc node add | ls | rm, and invalid entries in icc cache ls (the built CLI on a real cache folder)', () => {
  let root: string;
  let store: ImageStore;
  let holder: NodeLockManager;

  beforeEach(async () => {
    root = await makeTempDir('cli-node');
    store = new ImageStore({ root, fsync: false, onWarning: () => undefined });
    holder = new NodeLockManager({ root, conductorId: 'copier' });
  });
  afterEach(async () => {
    await holder.releaseAll();
    await removeDir(root);
  });

  const icc = async (args: string[], expectedCode: number) => {
    const run = await runIcc(args, { env: { CACHE_ROOT: root, LOCK_STALE_MS: '' } });
    expect(run.code, describeRun(args, run)).toBe(expectedCode);
    return run;
  };
  const ls = async () => JSON.parse((await icc(['node', 'ls', '--json'], 0)).stdout) as NodeRow[];
  async function seed(node: string, imageId: string, bytes: number): Promise<void> {
    const staging = path.join(root, '.staging');
    await fsp.writeFile(staging, Buffer.alloc(bytes, 3));
    await store.imports.importImage(node, imageId, staging);
    await fsp.rm(staging);
  }

  it('registers a node with a marker, lists it, keeps the marker on a second add, and unregisters it', async () => {
    const added = await icc(['node', 'add', 'node-a', '--by', 'ops@bastion'], 0);
    expect(added.stdout).toBe(`registered node node-a (${path.join(root, 'node-a', 'node.json')})\n`);
    const marker = JSON.parse(await fsp.readFile(path.join(root, 'node-a', 'node.json'), 'utf8')) as Record<
      string,
      unknown
    >;
    expect(marker).toEqual({
      v: 1,
      node: 'node-a',
      registeredAt: expect.any(String),
      registeredBy: 'ops@bastion',
    });
    expect(Date.parse(String(marker.registeredAt))).not.toBeNaN();
    expect(await listDir(path.join(root, 'node-a'))).toEqual(['node.json']);

    const again = await icc(['node', 'add', 'node-a'], 0);
    expect(again.stdout).toBe(
      `node node-a was already registered (at ${String(marker.registeredAt)} by ops@bastion)\n`,
    );

    await seed('node-a', 'img.raw', 1500);
    await fsp.writeFile(path.join(root, 'node-a', 'draining'), '');
    await icc(['node', 'add', 'node-b'], 0);
    expect(await ls()).toEqual([
      {
        node: 'node-a',
        registered: true,
        registeredAt: marker.registeredAt,
        registeredBy: 'ops@bastion',
        draining: true,
        images: 1,
        bytes: 1500,
      },
      {
        node: 'node-b',
        registered: true,
        registeredAt: expect.any(String),
        registeredBy: expect.stringMatching(/^icc .+@.+/),
        draining: false,
        images: 0,
        bytes: 0,
      },
    ]);
    const table = (await icc(['node', 'ls'], 0)).stdout;
    expect(table).toMatch(/│ node-a\s+│ \S+Z\s+│ ops@bastion\s+│ yes\s+│ 1\s+│ 1\.5 KiB │/);
    expect(table).toMatch(/│ node-b\s+│ \S+Z\s+│ icc .+@.+│ no\s+│ 0\s+│ 0 B\s+│/);
    // Bounded: --limit shows the first nodes by id and says how many more there are.
    const cut = (await icc(['node', 'ls', '--limit', '1'], 0)).stdout;
    expect(cut).toContain('node-a');
    expect(cut).not.toContain('node-b');
    expect(cut).toMatch(/… \d+ more nodes \(use --limit\)\n$/);

    expect((await icc(['node', 'rm', 'node-b'], 0)).stdout).toBe(
      'unregistered node node-b: conductors no longer copy to or from it\n',
    );
    expect(await exists(path.join(root, 'node-b', 'node.json'))).toBe(false);
    expect((await ls()).find((n) => n.node === 'node-b')).toMatchObject({
      registered: false,
      problem: expect.stringMatching(/^no marker /),
    });
    const notRegistered = await icc(['node', 'rm', 'node-b'], 2);
    expect(notRegistered.stderr).toMatch(/<node>: node node-b is not registered under /);
  });

  it('refuses to unregister a node while one of its locks is held, and one with images unless --force', async () => {
    await icc(['node', 'add', 'node-a'], 0);
    await seed('node-a', 'img.raw', 100);
    const lock = await holder.acquire(
      { node: 'node-a', imageId: 'img.raw', mode: 'shared' },
      { timeoutMs: 5_000, attemptId: 'reading-1' },
    );

    const refused = await icc(['node', 'rm', 'node-a', '--force'], 1);
    expect(refused.stderr).toMatch(
      /node node-a: 1 lock\(s\) held, not unregistered .*\n\s+img\.raw: shared copier\/reading-1/,
    );
    expect(await store.markers.isRegistered('node-a')).toBe(true);

    await lock.release();
    const withImages = await icc(['node', 'rm', 'node-a'], 2);
    expect(withImages.stderr).toMatch(
      /<node>: node node-a holds 1 cached image\(s\) \(100 B\): pass --force to unregister it anyway/,
    );
    expect(await store.markers.isRegistered('node-a')).toBe(true);

    const forced = await icc(['node', 'rm', 'node-a', '--force'], 0);
    expect(forced.stdout).toMatch(/^unregistered node node-a: .*; its 1 cached image\(s\) stay in /);
    expect(await store.markers.isRegistered('node-a')).toBe(false);
    expect(await listDir(store.nodeLayout('node-a').images)).toEqual([
      'img.raw',
      'img.raw.meta.json',
      'img.raw~pieces.json',
    ]);
  });

  it('registers the folders of a cell from before registration with --existing, and shows broken markers', async () => {
    // An old cell: node folders with images/, a folder without, and one node already registered.
    for (const node of ['old-1', 'old-2'])
      await fsp.mkdir(path.join(root, node, 'images'), { recursive: true });
    await fsp.mkdir(path.join(root, 'not-a-node'));
    await icc(['node', 'add', 'node-new'], 0);
    const existing = await icc(['node', 'add', '--existing', '--by', 'migration'], 0);
    expect(existing.stdout).toBe(
      `registered node old-1 (${path.join(root, 'old-1', 'node.json')})\nregistered node old-2 (${path.join(root, 'old-2', 'node.json')})\n`,
    );
    expect((await ls()).map((n) => [n.node, n.registered])).toEqual([
      ['node-new', true],
      ['not-a-node', false],
      ['old-1', true],
      ['old-2', true],
    ]);
    expect((await icc(['node', 'add', '--existing'], 0)).stdout).toBe(
      `no unregistered node folder with images/ under ${root}\n`,
    );

    await fsp.writeFile(
      path.join(root, 'old-2', 'node.json'),
      JSON.stringify({ v: 1, node: 'old-2', registeredBy: 'x' }),
    );
    expect((await ls()).find((n) => n.node === 'old-2')).toEqual({
      node: 'old-2',
      registered: false,
      problem: expect.stringMatching(
        new RegExp(`^invalid marker ${path.join(root, 'old-2', 'node.json')}: registeredAt: `),
      ),
      draining: false,
      images: 0,
      bytes: 0,
    });
    expect((await icc(['node', 'ls'], 0)).stdout).toMatch(
      /│ old-2\s+│ not registered: invalid marker .*registeredAt: /,
    );
    // add repairs a broken marker (and says what was wrong with it).
    const repaired = await icc(['node', 'add', 'old-2'], 0);
    expect(repaired.stderr).toMatch(/icc: warning: invalid file .*old-2\/node\.json: registeredAt: /);
    expect((await ls()).find((n) => n.node === 'old-2')?.registered).toBe(true);
  });

  it('exits 2 on bad arguments, naming the argument, and creates nothing', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['node', 'add', '../x'], /<node>: .*must not contain '\.\.'/],
      [['node', 'add', 'a/b'], /<node>: must start with a letter or digit/],
      [['node', 'add', ''], /<node>: must not be empty/],
      [['node', 'add', 'n'.repeat(65)], /<node>: must be at most 64 characters/],
      [['node', 'add'], /<node>: is required \(or --existing/],
      [
        ['node', 'add', 'node-a', '--existing'],
        /--existing: registers every existing node folder: give no <node> with it/,
      ],
      [['node', 'add', 'node-a', '--by', ''], /--by: must not be empty/],
      [['node', 'add', 'node-a', '--by', 'tab\there'], /--by: must be printable ASCII/],
      [
        ['node', 'add', 'node-a', '--cache-root', path.join(root, 'missing')],
        /--cache-root: .*missing is not an existing folder/,
      ],
      [['node', 'rm', '..'], /<node>: /],
      [['node', 'rm'], /missing required argument 'node'/],
      [['node', 'rm', 'node-a', '--stale-ms', 'soon'], /--stale-ms: must be a positive whole number/],
      [['node', 'ls', '--bogus'], /unknown option '--bogus'/],
    ];
    const runs = await Promise.all(cases.map(([args]) => runIcc(args, { env: { CACHE_ROOT: root } })));
    for (const [i, run] of runs.entries()) {
      expect(run.code, describeRun(cases[i]![0], run)).toBe(2);
      expect(run.stderr, describeRun(cases[i]![0], run)).toMatch(cases[i]![1]);
      expect(run.stdout).toBe('');
    }
    const noRoot = await runIcc(['node', 'ls'], { env: { CACHE_ROOT: '' } });
    expect(noRoot.code, describeRun(['node', 'ls'], noRoot)).toBe(2);
    expect(noRoot.stderr).toMatch(/--cache-root: is required/);
    expect(await listDir(root)).toEqual([]);
  });

  it('icc cache ls shows an entry whose meta file fails validation as invalid, with the field', async () => {
    await icc(['node', 'add', 'node-a'], 0);
    await seed('node-a', 'good.img', 10);
    await seed('node-a', 'broken.img', 20);
    const metaPath = store.entries.metaPath('node-a', 'broken.img');
    const { lastUsedAt: _dropped, ...meta } = JSON.parse(await fsp.readFile(metaPath, 'utf8')) as Record<
      string,
      unknown
    >;
    await fsp.writeFile(metaPath, JSON.stringify(meta));

    const listing = JSON.parse((await icc(['cache', 'ls', 'node-a', '--json'], 0)).stdout) as {
      registered: boolean;
      images: Array<{ imageId: string }>;
      invalid: Array<{ imageId: string; bytes: number; problem: string }>;
    };
    expect(listing.registered).toBe(true);
    expect(listing.images.map((i) => i.imageId)).toEqual(['good.img']);
    expect(listing.invalid).toEqual([
      {
        imageId: 'broken.img',
        bytes: 20,
        problem: expect.stringMatching(/^meta file invalid: lastUsedAt: /),
      },
    ]);
    const text = await icc(['cache', 'ls', 'node-a'], 0);
    expect(text.stdout).toMatch(/Invalid entries \(no conductor uses them; .*\):\n/);
    expect(text.stdout).toMatch(/│ broken\.img\s+│ 20 B\s+│ meta file invalid: lastUsedAt: /);
    expect(text.stderr).toBe('');
  });
});
