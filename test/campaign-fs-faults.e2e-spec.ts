import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HEADER_REASON } from '@app/contracts';
import { Cleanups, bySize, campaignRun, writeReport } from './campaigns/campaign-kit';
import {
  FS_MIB,
  commonChecks,
  deadLetters,
  mountReadOnly,
  mountTmpfs,
  nodeFiles,
  request,
  resultsOf,
  startScenario,
  whileCopying,
} from './campaigns/fs-faults';
import { conductorPool } from './support/conductor-harness';
import { exists, sha256OfFile } from './support/image-store-fixtures';

/*
 * Campaign 3 (issue 8): file-system faults under a running conductor. Each gives a clear failed result
 * (or a retry that then succeeds), leaves the sources untouched (but the one altered on purpose), and
 * never publishes a partial image. Mounts need root. Replay: CAMPAIGN_SEED=<seed> npx vitest run test/campaign-fs-faults
 */
const run = campaignRun('fs-faults');
const BIG = bySize(run, { ci: 96 * FS_MIB, large: 512 * FS_MIB });
const figures: Record<string, unknown> = {};

describe('campaign: file-system faults', () => {
  const cleanups = new Cleanups();
  const pool = conductorPool(() => cleanups.run());

  it('a destination out of space: NO_SPACE retried, then RETRIES_EXHAUSTED; the partial copy is removed, a copy that fits still completes', async () => {
    const s = await startScenario(pool, cleanups, {
      nodes: ['src', 'full'],
      images: [
        { node: 'src', imageId: 'big.img', bytes: 16 * FS_MIB },
        { node: 'src', imageId: 'small.img', bytes: 1 * FS_MIB },
      ],
      prepare: async (cell) => {
        await mountTmpfs(cleanups, path.join(cell.root, 'full'), '8m');
        await cell.store.markers.registerNode('full', 'fs-faults'); // the tmpfs hides the marker written beneath it
      },
      env: { MAX_ATTEMPTS: '3' },
    });
    s.watcher.watch(s.cell.store.entries.imagePath('full', 'big.img'), s.sources.get('src/big.img')!);
    s.watcher.watch(s.cell.store.entries.imagePath('full', 'small.img'), s.sources.get('src/small.img')!);

    await request(s.cell, { requestId: 'no-space', imageId: 'big.img', destination: 'full', source: 'src' });
    const results = await resultsOf(s, 'no-space');
    expect(results.map((r) => [r.reason, r.retryable, r.attempt])).toEqual([
      ['NO_SPACE', true, 1],
      ['NO_SPACE', true, 2],
      ['RETRIES_EXHAUSTED', false, 3],
    ]);
    expect(String(results.at(-1)!.detail)).toContain('NO_SPACE');
    const dead = await deadLetters(s, 1);
    expect(dead.map((d) => d.headers[HEADER_REASON])).toEqual(['RETRIES_EXHAUSTED']);
    expect(await exists(s.cell.store.entries.imagePath('full', 'big.img'))).toBe(false);

    // The space of the removed partial copy is free again: a copy that fits completes.
    await request(s.cell, { requestId: 'fits', imageId: 'small.img', destination: 'full', source: 'src' });
    expect((await resultsOf(s, 'fits')).at(-1)).toMatchObject({ status: 'completed' });
    expect(await sha256OfFile(s.cell.store.entries.imagePath('full', 'small.img'))).toBe(
      s.sources.get('src/small.img')!.sha256,
    );
    expect(await commonChecks(s)).toEqual([]);
    figures.noSpace = {
      results: results.map((r) => `${String(r.reason)}@${String(r.attempt)}`),
      deadLetters: dead.length,
      finalPathLooks: s.watcher.looks,
    };
  });

  it('a read-only destination: DESTINATION_READ_ONLY at once, dead-lettered, nothing written', async () => {
    const s = await startScenario(pool, cleanups, {
      nodes: ['src', 'ro'],
      images: [{ node: 'src', imageId: 'img.raw', bytes: 4 * FS_MIB }],
      prepare: async (cell) => mountReadOnly(cleanups, path.join(cell.root, 'ro')),
    });
    s.watcher.watch(s.cell.store.entries.imagePath('ro', 'img.raw'), s.sources.get('src/img.raw')!);
    const before = await nodeFiles(s.cell, 'ro');
    await request(s.cell, { requestId: 'read-only', imageId: 'img.raw', destination: 'ro', source: 'src' });
    const results = await resultsOf(s, 'read-only');
    expect(results.map((r) => [r.status, r.reason, r.retryable])).toEqual([
      ['failed', 'DESTINATION_READ_ONLY', false],
    ]);
    expect(String(results[0]!.detail)).toMatch(/EROFS|read-only|not writable/);
    expect((await deadLetters(s, 1)).map((d) => d.headers[HEADER_REASON])).toEqual(['DESTINATION_READ_ONLY']);
    expect(await nodeFiles(s.cell, 'ro')).toEqual(before);
    expect(await commonChecks(s)).toEqual([]);
    figures.readOnly = { results: results.map((r) => r.reason) };
  });

  it('a source truncated, or altered, while it is being copied: SIZE_MISMATCH / CHECKSUM_MISMATCH, nothing published', async () => {
    const s = await startScenario(pool, cleanups, {
      nodes: ['src', 'dst', 'other'],
      images: [
        { node: 'src', imageId: 'truncated.img', bytes: BIG },
        { node: 'src', imageId: 'altered.img', bytes: BIG },
        { node: 'src', imageId: 'bystander.img', bytes: 2 * FS_MIB },
      ],
    });
    for (const imageId of ['truncated.img', 'altered.img'])
      s.watcher.watch(s.cell.store.entries.imagePath('dst', imageId), s.sources.get(`src/${imageId}`)!);

    await request(s.cell, {
      requestId: 'truncated',
      imageId: 'truncated.img',
      destination: 'dst',
      source: 'src',
    });
    const truncatedAt = await whileCopying(s, 'dst', () =>
      fsp.truncate(s.cell.store.entries.imagePath('src', 'truncated.img'), BIG / 2),
    );
    const truncated = await resultsOf(s, 'truncated');
    expect(truncated.map((r) => [r.status, r.reason, r.retryable])).toEqual([
      ['failed', 'SIZE_MISMATCH', false],
    ]);

    await request(s.cell, {
      requestId: 'altered',
      imageId: 'altered.img',
      destination: 'dst',
      source: 'src',
      sha256: s.sources.get('src/altered.img')!.sha256,
    });
    const alteredAt = await whileCopying(s, 'dst', async () => {
      // The last MiB, which the copy has not read yet, overwritten in place (size unchanged).
      const handle = await fsp.open(s.cell.store.entries.imagePath('src', 'altered.img'), 'r+');
      try {
        await handle.write(Buffer.alloc(FS_MIB, 0x5a), 0, FS_MIB, BIG - FS_MIB);
      } finally {
        await handle.close();
      }
    });
    const altered = await resultsOf(s, 'altered');
    expect(altered.map((r) => [r.status, r.reason, r.retryable])).toEqual([
      ['failed', 'CHECKSUM_MISMATCH', false],
    ]);
    expect((await deadLetters(s, 2)).map((d) => d.headers[HEADER_REASON]).sort()).toEqual([
      'CHECKSUM_MISMATCH',
      'SIZE_MISMATCH',
    ]);
    for (const imageId of ['truncated.img', 'altered.img'])
      expect(await exists(s.cell.store.entries.imagePath('dst', imageId)), imageId).toBe(false);

    // The conductor keeps serving; the bystander image (untouched) copies fine.
    await request(s.cell, {
      requestId: 'bystander',
      imageId: 'bystander.img',
      destination: 'other',
      source: 'src',
    });
    expect((await resultsOf(s, 'bystander')).at(-1)).toMatchObject({ status: 'completed' });
    expect(await commonChecks(s, { altered: ['src/truncated.img', 'src/altered.img'] })).toEqual([]);
    figures.sourceChanged = {
      imageBytes: BIG,
      truncatedAtPartialBytes: truncatedAt,
      alteredAtPartialBytes: alteredAt,
      results: [truncated[0]!.reason, altered[0]!.reason],
    };
  });

  it('a lock folder removed by hand during a copy (destination, then source): LOCK_LOST, retried, then completed and verified', async () => {
    const s = await startScenario(pool, cleanups, {
      nodes: ['src', 'dst'],
      images: [
        { node: 'src', imageId: 'a.img', bytes: BIG },
        { node: 'src', imageId: 'b.img', bytes: BIG },
      ],
    });
    const outcomes: Record<string, unknown> = {};
    for (const [imageId, side] of [
      ['a.img', 'dst'],
      ['b.img', 'src'],
    ] as const) {
      s.watcher.watch(s.cell.store.entries.imagePath('dst', imageId), s.sources.get(`src/${imageId}`)!);
      const requestId = `lock-removed-${side}`;
      await request(s.cell, { requestId, imageId, destination: 'dst', source: 'src' });
      const lockDir = path.join(s.cell.root, side, 'locks', imageId);
      const destinationGenerations: number[] = [];
      await whileCopying(s, 'dst', async () => {
        for (const name of await fsp.readdir(path.join(s.cell.root, 'dst', 'locks', imageId)))
          if (/^g-\d+$/.test(name)) destinationGenerations.push(Number(name.slice(2)));
        await fsp.rm(lockDir, { recursive: true, force: true });
      });
      const results = await resultsOf(s, requestId);
      expect(
        results.map((r) => [r.status, r.reason, r.attempt]),
        side,
      ).toEqual([
        ['failed', 'LOCK_LOST', 1],
        ['completed', undefined, 2],
      ]);
      expect(await sha256OfFile(s.cell.store.entries.imagePath('dst', imageId))).toBe(
        s.sources.get(`src/${imageId}`)!.sha256,
      );
      // Published by the second attempt only, under a newer generation (fencing token) than the first's.
      const meta = await s.cell.store.entries.readMeta('dst', imageId);
      expect(meta?.fencingToken, side).toBeGreaterThan(Math.max(...destinationGenerations));
      outcomes[side] = {
        results: results.map(
          (r) => `${r.status}${r.reason ? `:${String(r.reason)}` : ''}@${String(r.attempt)}`,
        ),
        fencingToken: meta?.fencingToken,
      };
    }
    expect(await deadLetters(s, 0)).toEqual([]);
    expect(await commonChecks(s)).toEqual([]);
    figures.lockRemoved = outcomes;
  });

  it('report', () => {
    writeReport(run, { scenarios: figures });
  });
});
