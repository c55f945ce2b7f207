import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partialOpenFlags, partialReadsBypassCache } from '@app/image-store';
import { cacheRootMount } from '../apps/conductor/src/cache-root/cache-root-mount';
import { GLUSTER_NO_CLIENT_CACHE } from './support/shared-fs/gluster-volume';
import { type SharedFsKind, SharedFsBed, sharedFsLeftovers } from './support/shared-fs/shared-fs-bed';

const PIECE = 4 * 1024 * 1024;
const PIECES = 12;
const TRIALS = 4;
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * What a copy in progress looks like from another ceph-fuse client (issue 27; the large pieces campaign on
 * CephFS found it as published images with the wrong bytes). Client b writes a partial's pieces in a
 * random order, as a piece copy does; client a meanwhile reads pieces already written, as a copy that
 * reads from copies in progress does; then b fsyncs, closes and renames it, as a publish does, and client
 * a reads the published file whole. Read with ordinary buffered reads, a's page cache kept bytes from
 * before b's writes (read-ahead past the written pieces) and a saw old bytes in the published image (5 of
 * 6 trials, and in about half the piece reads). Read as the image store reads other copies' partials on
 * ceph-fuse, nothing stale is ever seen.
 */
/**
 * GlusterFS: the product reads partials buffered there (O_DIRECT would have to meet the bricks' disk
 * alignment); its FUSE client must be mounted with direct-io-mode=enable (docs/deployment.md). Without it
 * the same trials showed old bytes in the published file in 8 of 8.
 */
const EXPECTED_FS_TYPE: Record<SharedFsKind, string> = {
  cephfs: 'fuse.ceph-fuse',
  glusterfs: 'fuse.glusterfs',
};

describe.each(['cephfs', 'glusterfs'] as const)('reading copies in progress across %s clients', (kind) => {
  let bed: SharedFsBed;
  beforeAll(async () => {
    bed = await SharedFsBed.start(kind, ['a', 'b'], {
      gluster: {
        volumeOptions: { 'performance.stat-prefetch': 'off' },
        clientOptions: GLUSTER_NO_CLIENT_CACHE,
      },
    });
  });
  afterAll(async () => {
    const base = bed?.base;
    await bed?.stop();
    if (base) expect(await sharedFsLeftovers(base)).toEqual([]);
  });

  /** One trial: stale pieces seen while it was written, and stale pieces in the whole file afterwards. */
  async function trial(name: string, flags: number): Promise<{ whilePieces: number; afterPieces: number }> {
    const a = bed.mount('a');
    const b = bed.mount('b');
    const data = randomBytes(PIECE * PIECES);
    const piece = (bytes: Buffer, i: number) => bytes.subarray(i * PIECE, (i + 1) * PIECE);
    const writer = await fsp.open(path.join(b, `${name}.part`), 'wx+');
    const written: number[] = [];
    let writing = true;
    let whilePieces = 0;
    const reader = (async () => {
      const buffer = Buffer.alloc(PIECE);
      while (writing) {
        await sleep(15);
        const i = written[Math.floor(Math.random() * written.length)];
        if (i === undefined) continue;
        const file = await fsp.open(path.join(a, `${name}.part`), flags);
        try {
          await file.read(buffer, 0, PIECE, i * PIECE);
        } finally {
          await file.close();
        }
        if (sha256(buffer) !== sha256(piece(data, i))) whilePieces++;
      }
    })();
    try {
      for (const i of [...Array(PIECES).keys()].sort(() => Math.random() - 0.5)) {
        await writer.write(data, i * PIECE, PIECE, i * PIECE);
        written.push(i);
        await sleep(30);
      }
      await writer.sync();
    } finally {
      writing = false;
      await writer.close();
      await reader;
    }
    await fsp.rename(path.join(b, `${name}.part`), path.join(b, name));
    const seen = await fsp.readFile(path.join(a, name));
    let afterPieces = 0;
    for (let i = 0; i < PIECES; i++) if (sha256(piece(seen, i)) !== sha256(piece(data, i))) afterPieces++;
    return { whilePieces, afterPieces };
  }

  it('reads them past the page cache, so the published image reads right from every client', async () => {
    const mount = await cacheRootMount(bed.mount('a'));
    expect(mount?.fsType).toBe(EXPECTED_FS_TYPE[kind]);
    const uncached = partialOpenFlags(partialReadsBypassCache(mount?.fsType));

    const asStore = [];
    for (let t = 0; t < TRIALS; t++) asStore.push(await trial(`store-${t}`, uncached));
    // For the record, not asserted (how often it shows depends on timing): plain buffered reads.
    const buffered = [];
    for (let t = 0; t < TRIALS; t++) buffered.push(await trial(`buffered-${t}`, partialOpenFlags(false)));
    console.log(
      `[${kind} partial reads] as the store reads: ${JSON.stringify(asStore)}; buffered: ${JSON.stringify(buffered)}`,
    );
    expect(asStore).toEqual(Array.from({ length: TRIALS }, () => ({ whilePieces: 0, afterPieces: 0 })));
  });
});
