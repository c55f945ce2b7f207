import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ImageStore } from '@app/image-store';
import { runCacheLs } from '../cache/cache-ls';
import { UsageError } from '../cli/exit-codes';
import type { Terminal } from '../cli/terminal';
import { runNodeLs } from './node-commands';

/** A terminal that keeps what a command printed. */
function captured(): Terminal & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (text) => stdout.push(text),
    err: (text) => stderr.push(text),
    stdoutIsTTY: false,
    stderrIsTTY: false,
  };
}

describe('icc listings stay bounded and say when they are cut', () => {
  let root: string;
  let store: ImageStore;
  let seedFile: string;

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-listing-'));
    store = new ImageStore({ root, fsync: false });
    for (let i = 0; i < 5; i++) await store.markers.registerNode(`node-${i}`, 'listing.spec');
    seedFile = path.join(root, 'seed');
    await fsp.writeFile(seedFile, 'image bytes');
    for (let i = 0; i < 3; i++) await store.imports.importImage('node-0', `img-${i}`, seedFile);
  });
  afterEach(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  it('icc node ls --limit: the first nodes by id, and how many more there are', async () => {
    const term = captured();
    await runNodeLs({ cacheRoot: root, limit: '2' }, term);
    const text = term.stdout.join('\n');
    expect(text).toContain('node-0');
    expect(text).toContain('node-1');
    expect(text).not.toContain('node-2');
    expect(text).toMatch(/… 3 more nodes \(use --limit\)$/);
    // JSON stays an array of nodes; the notice goes to stderr.
    const json = captured();
    await runNodeLs({ cacheRoot: root, limit: '2', json: true }, json);
    expect((JSON.parse(json.stdout[0]!) as Array<{ node: string }>).map((n) => n.node)).toEqual([
      'node-0',
      'node-1',
    ]);
    expect(json.stderr).toEqual(['… 3 more nodes (use --limit)']);
    // Everything shown: no notice.
    const all = captured();
    await runNodeLs({ cacheRoot: root }, all);
    expect(all.stdout.join('\n')).toContain('node-4');
    expect(all.stdout.join('\n')).not.toContain('more nodes');
    await expect(runNodeLs({ cacheRoot: root, limit: '0' }, all)).rejects.toThrow(UsageError);
  });

  it('icc cache ls --limit: the first images by id, imagesTotal in the JSON', async () => {
    const term = captured();
    await runCacheLs('node-0', { cacheRoot: root, limit: '1' }, term);
    const text = term.stdout.join('\n');
    expect(text).toContain('img-0');
    expect(text).not.toContain('img-1');
    expect(text).toContain('… 2 more images (use --limit)');
    const json = captured();
    await runCacheLs('node-0', { cacheRoot: root, limit: '2', json: true }, json);
    const listing = JSON.parse(json.stdout[0]!) as {
      images: Array<{ imageId: string }>;
      imagesTotal: number;
    };
    expect(listing.images.map((i) => i.imageId)).toEqual(['img-0', 'img-1']);
    expect(listing.imagesTotal).toBe(3);
    expect(json.stderr).toEqual(['… 1 more images (use --limit)']);
    const all = captured();
    await runCacheLs('node-0', { cacheRoot: root }, all);
    expect(all.stdout.join('\n')).toContain('img-2');
    expect(all.stdout.join('\n')).not.toContain('more images');
  });
});
