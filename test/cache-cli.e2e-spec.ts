import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CleanReport } from '@app/cache-cleaner';
import { ImageStore } from '@app/image-store';
import { NodeLockManager } from '@app/locking';
import { describeRun, runIcc } from './support/agent-cli';
import { makeTempDir, removeDir } from './support/temp-dirs';

describe('icc cache clean | pin | unpin (the built CLI on a real cache folder)', () => {
  let root: string;
  let store: ImageStore;
  let copier: NodeLockManager;

  beforeEach(async () => {
    root = await makeTempDir('cli-clean');
    store = new ImageStore({ root, fsync: false });
    copier = new NodeLockManager({ root, conductorId: 'copier' });
    await store.markers.registerNode('node-a', 'cache-cli');
    const staging = path.join(root, '.staging');
    for (const [imageId, bytes, agoMs] of [
      ['old.img', 3000, 48 * 3_600_000],
      ['busy.img', 2000, 48 * 3_600_000],
      ['keep.img', 1000, 48 * 3_600_000],
      ['new.img', 500, 60_000],
    ] as const) {
      await fsp.writeFile(staging, Buffer.alloc(bytes, 1));
      const meta = await store.imports.importImage('node-a', imageId, staging);
      const at = new Date(Date.now() - agoMs).toISOString();
      await fsp.writeFile(
        store.entries.metaPath('node-a', imageId),
        JSON.stringify({ ...meta, createdAt: at, lastUsedAt: at }),
      );
    }
    await fsp.rm(staging);
  });
  afterEach(async () => {
    await copier.releaseAll();
    await removeDir(root);
  });

  const icc = async (args: string[], expectedCode: number) => {
    const run = await runIcc(args, { env: { CACHE_ROOT: '', LOCK_STALE_MS: '' } });
    expect(run.code, describeRun(args, run)).toBe(expectedCode);
    return run;
  };
  const present = async () => (await store.entries.listImages('node-a')).map((m) => m.imageId);

  it('pins, reports a dry run, then evicts beside a copy reading an image: busy and pinned images stay', async () => {
    const pinned = await icc(['cache', 'pin', 'node-a', 'keep.img', '--cache-root', root], 0);
    expect(pinned.stdout).toMatch(
      /^pinned keep\.img on node-a \(.*pinned\/keep\.img\): the cache cleaner will not delete it\n$/,
    );
    expect(await store.markers.isPinned('node-a', 'keep.img')).toBe(true);

    const dry = await icc(
      ['cache', 'clean', 'node-a', '--cache-root', root, '--max-unused', '1d', '--dry-run', '--json'],
      0,
    );
    const planned = JSON.parse(dry.stdout) as CleanReport;
    expect(planned).toMatchObject({
      dryRun: true,
      examined: 4,
      keptPinned: ['keep.img'],
      bytesFreed: 5000,
      bytesAfter: 1500,
    });
    expect(planned.deleted.map((d) => d.imageId).sort()).toEqual(['busy.img', 'old.img']);
    expect(await present()).toEqual(['busy.img', 'keep.img', 'new.img', 'old.img']);

    // A copy is reading busy.img (a conductor's shared lock on the source).
    const reader = await copier.acquire(
      { node: 'node-a', imageId: 'busy.img', mode: 'shared' },
      { timeoutMs: 1000 },
    );
    const run = await icc(['cache', 'clean', 'node-a', '--cache-root', root, '--max-unused', '1d'], 0);
    expect(run.stdout).toMatch(
      /^node node-a: examined 4, deleted 1 \(3000 bytes\), kept pinned 1, skipped busy 1, bytes after 3500 \(in \d+ ms\)\n/,
    );
    expect(run.stdout).toMatch(/│ old\.img\s+│ 2\.9 KiB │ unused │ 48h00m ago │/);
    expect(run.stdout).toMatch(
      /kept, pinned: keep\.img\nskipped, busy \(a copy holds its lock; next run\): busy\.img\n/,
    );
    expect(await present()).toEqual(['busy.img', 'keep.img', 'new.img']);
    expect(reader.lost).toBe(false);
    await reader.release();

    // The reader is gone: busy.img goes too. Over a budget, the least recently used unpinned image goes next.
    const json = JSON.parse(
      (
        await icc(
          ['cache', 'clean', 'node-a', '--cache-root', root, '--budget', '1K', '--grace', '0', '--json'],
          0,
        )
      ).stdout,
    ) as CleanReport;
    expect(json.deleted.map((d) => [d.imageId, d.why])).toEqual([
      ['busy.img', 'over-budget'],
      ['new.img', 'over-budget'],
    ]);
    expect(json).toMatchObject({ keptPinned: ['keep.img'], bytesAfter: 1000, overBudget: false });

    expect((await icc(['cache', 'unpin', 'node-a', 'keep.img', '--cache-root', root], 0)).stdout).toBe(
      'unpinned keep.img on node-a\n',
    );
    expect((await icc(['cache', 'unpin', 'node-a', 'keep.img', '--cache-root', root], 0)).stdout).toBe(
      'keep.img was not pinned on node-a\n',
    );
    await icc(['cache', 'clean', 'node-a', '--cache-root', root, '--max-unused', '1d'], 0);
    expect(await present()).toEqual([]);
    // Nothing left in the lock folders, nothing written outside the node.
    expect((await fsp.readdir(root)).sort()).toEqual(['node-a']);
  });

  it('exits 2 on bad flags and arguments, naming the flag, and deletes nothing', async () => {
    const cases: Array<[string[], RegExp]> = [
      [
        ['cache', 'clean', 'node-a', '--cache-root', root, '--budget', '5X'],
        /--budget: must be bytes, or a number with K, M, G, T or P .*\(got "5X"\)/,
      ],
      [
        ['cache', 'clean', 'node-a', '--cache-root', root, '--max-unused', '10'],
        /--max-unused: must be a number with a unit/,
      ],
      [
        ['cache', 'clean', 'node-a', '--cache-root', root, '--grace', 'soon'],
        /--grace: must be a number with a unit/,
      ],
      [
        ['cache', 'clean', 'node-a', '--cache-root', root, '--stale-ms', '5'],
        /--stale-ms: must be a whole number of milliseconds, at least 2000/,
      ],
      [
        ['cache', 'clean', 'node-z', '--cache-root', root],
        /<node>: no node node-z under .* \(nodes there: node-a\)/,
      ],
      [['cache', 'clean', '../node-a', '--cache-root', root], /<node>: .*must not contain '\.\.'/],
      [['cache', 'clean', 'node-a'], /--cache-root: is required/],
      [['cache', 'clean', 'node-a', '--cache-root', root, '--bogus'], /unknown option '--bogus'/],
      [['cache', 'pin', 'node-a', '../../etc', '--cache-root', root], /<imageId>: /],
      [['cache', 'pin', 'node-a', '--cache-root', root], /missing required argument 'imageId'/],
    ];
    const runs = await Promise.all(
      cases.map(([args]) => runIcc(args, { env: { CACHE_ROOT: '', LOCK_STALE_MS: '' } })),
    );
    for (const [i, run] of runs.entries()) {
      expect(run.code, describeRun(cases[i]![0], run)).toBe(2);
      expect(run.stderr, describeRun(cases[i]![0], run)).toMatch(cases[i]![1]);
      expect(run.stdout).toBe('');
    }
    expect(await present()).toEqual(['busy.img', 'keep.img', 'new.img', 'old.img']);
    expect(await fsp.readdir(store.nodeLayout('node-a').dir)).not.toContain('pinned');

    const help = await icc(['cache', 'clean', '--help'], 0);
    expect(help.stdout).toMatch(/--max-unused <duration>/);
    expect(help.stdout).toMatch(/Never deleted: pinned images/);
  });
});
