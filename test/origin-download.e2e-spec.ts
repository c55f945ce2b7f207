import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AdminHttp } from './support/admin-http';
import { ChildProcessPool } from './support/child-processes';
import { ConductorProcess } from './support/conductor-process';
import { sha256OfFile } from './support/image-store-fixtures';
import { ORIGIN_TOKEN, OriginServer } from './support/origin-server';
import { RawAmqpClient } from './support/raw-amqp-client';
import { TestCell } from './support/test-cell';

const MiB = 1024 * 1024;
const NODES = Array.from({ length: 8 }, (_, i) => `node-${i + 1}`);

describe('conductor: images from the cell origin (a local HTTP server of the test)', () => {
  const pool = new ChildProcessPool<unknown>();
  let origin: OriginServer;
  let cell: TestCell;
  let client: RawAmqpClient;

  beforeAll(async () => {
    origin = await OriginServer.start();
  });
  afterAll(async () => {
    await origin.stop();
  });
  beforeEach(async () => {
    cell = await TestCell.create({ nodes: NODES });
    client = await RawAmqpClient.open();
  });
  afterEach(async () => {
    await client.close();
    await pool.killAll();
    await cell.cleanup();
  });

  const originEnv = (overrides: Record<string, string> = {}) =>
    cell.conductorEnv({
      ORIGIN_URL: origin.urlTemplate,
      ORIGIN_AUTH_HEADER: `X-Auth-Token: ${ORIGIN_TOKEN}`,
      ORIGIN_IDLE_TIMEOUT_MS: '2000',
      MAX_ATTEMPTS: '2',
      ...overrides,
    });
  const request = (imageId: string, destination: string, extra: Record<string, unknown> = {}) =>
    client.finalReply(
      client.send(cell.topology.requestQueue.name, {
        v: 1,
        requestId: `r-${randomBytes(4).toString('hex')}`,
        imageId,
        destination,
        ...extra,
      }),
    );
  const unique = (name: string) => `${name}-${randomBytes(3).toString('hex')}.img`;
  const nothingPublished = async (imageId: string, node = 'node-1') => {
    expect(await cell.store.copies.verifiedImage(node, imageId)).toBeUndefined();
    expect(await cell.tmpLeftovers()).toEqual([]);
  };

  it('fans one new image out to 8 nodes from 2 conductors: one download from the origin, the rest copied in the cell', async () => {
    const imageId = unique('fan');
    const image = origin.add(imageId, { body: randomBytes(6 * MiB), slowChunk: 256 * 1024, slowPauseMs: 10 });
    const env = originEnv({ COPY_CONCURRENCY: '8' });
    const conductors = [ConductorProcess.start(pool, env), ConductorProcess.start(pool, env)];
    await Promise.all(conductors.map((c) => c.ready()));
    const replies = await Promise.all(NODES.map((node) => request(imageId, node)));
    for (const reply of replies) expect(reply).toMatchObject({ status: 'completed', sha256: image.sha256 });
    for (const node of NODES)
      expect(await sha256OfFile(cell.store.entries.imagePath(node, imageId))).toBe(image.sha256);
    expect(origin.gets(imageId)).toEqual({ all: 1, fromStart: 1 });
    // Exactly one result came without a source node (the download); the others name the node they read.
    expect(replies.filter((r) => r.source === undefined)).toHaveLength(1);
    const downloaded = await cell.store.copies.verifiedImage(
      replies.find((r) => r.source === undefined)!.destination as string,
      imageId,
    );
    expect(downloaded?.source).toEqual({ via: 'origin' });
    expect(await cell.tmpLeftovers()).toEqual([]);
  });

  it('resumes a body dropped mid-way with a Range request, and shows the origin redacted in /status and logs', async () => {
    const imageId = unique('drop');
    const image = origin.add(imageId, { body: randomBytes(3 * MiB), dropAfter: MiB + 17, dropTimes: 2 });
    const conductor = await ConductorProcess.start(pool, originEnv()).ready();
    expect(await request(imageId, 'node-1')).toMatchObject({ status: 'completed', sha256: image.sha256 });
    expect(await sha256OfFile(cell.store.entries.imagePath('node-1', imageId))).toBe(image.sha256);
    const gets = origin.requests.filter((r) => r.imageId === imageId);
    // Two drops, two resumes from where the bytes stopped (what the kernel delivered before the drop).
    expect(gets).toHaveLength(3);
    expect(gets[0]!.range).toBeUndefined();
    const starts = gets.slice(1).map((g) => Number(/^bytes=(\d+)-$/.exec(g.range ?? '')?.[1]));
    expect(starts[0]).toBeGreaterThan(0);
    expect(starts[0]).toBeLessThanOrEqual(MiB + 17);
    expect(starts[1]).toBeGreaterThan(starts[0]!);
    expect(starts[1]).toBeLessThanOrEqual(2 * (MiB + 17));

    const status = (await AdminHttp.of(conductor).get('/status')).json<{ origin: Record<string, unknown> }>();
    expect(status.origin).toEqual({
      urlTemplate: origin.urlTemplate,
      authHeader: 'X-Auth-Token: [redacted]',
      checksumHeader: 'X-Checksum-Sha256',
      downloads: 1,
      bytes: image.size,
    });
    expect(conductor.child.output.join('')).not.toContain(ORIGIN_TOKEN);
  });

  it('downloads from a slow origin, verified against the request sha256', async () => {
    const imageId = unique('slow');
    const image = origin.add(imageId, {
      body: randomBytes(2 * MiB),
      checksum: null,
      slowChunk: 64 * 1024,
      slowPauseMs: 15,
    });
    await ConductorProcess.start(pool, originEnv()).ready();
    expect(await request(imageId, 'node-2', { sha256: image.sha256 })).toMatchObject({
      status: 'completed',
      sha256: image.sha256,
      bytes: image.size,
    });
  });

  it('answers each origin failure with its reason and publishes nothing', async () => {
    const lie = unique('lie');
    origin.add(lie, { body: randomBytes(MiB), checksum: 'c0ffee'.repeat(10) + 'c0de' });
    const malformed = unique('malformed');
    origin.add(malformed, { body: randomBytes(1000), checksum: 'not-a-checksum' });
    const none = unique('none');
    origin.add(none, { body: randomBytes(1000), checksum: null });
    const down = unique('down');
    origin.add(down, { body: randomBytes(10), status: 503 });
    const wrongRequest = unique('wrongreq');
    origin.add(wrongRequest, { body: randomBytes(1000) });
    const missing = unique('missing');
    await ConductorProcess.start(pool, originEnv({ ORIGIN_ATTEMPTS: '2' })).ready();

    const cases: Array<[string, Record<string, unknown>, Record<string, unknown>, RegExp]> = [
      [
        lie,
        {},
        { reason: 'CHECKSUM_MISMATCH' },
        /the bytes have sha256 [0-9a-f]{64}, expected (c0ffee){10}c0de/,
      ],
      [malformed, {}, { reason: 'ORIGIN_BAD_RESPONSE' }, /header X-Checksum-Sha256 must be a sha256/],
      [none, {}, { reason: 'ORIGIN_BAD_RESPONSE' }, /no checksum to verify against/],
      [missing, {}, { reason: 'ORIGIN_NOT_FOUND' }, /404/],
      [down, {}, { reason: 'RETRIES_EXHAUSTED' }, /ORIGIN_UNAVAILABLE|503 on the last of 2 attempts/],
      [wrongRequest, { sha256: 'ab'.repeat(32) }, { reason: 'CHECKSUM_MISMATCH' }, /the origin announces/],
    ];
    for (const [imageId, extra, expected, detail] of cases) {
      const reply = await request(imageId, 'node-1', extra);
      expect(reply, imageId).toMatchObject({ status: 'failed', ...expected });
      expect(reply.detail, imageId).toMatch(detail);
      await nothingPublished(imageId);
    }
  });

  it('answers ORIGIN_UNAUTHORIZED when the origin refuses the credentials, naming the header but not its value', async () => {
    const imageId = unique('auth');
    origin.add(imageId, { body: randomBytes(1000) });
    const conductor = await ConductorProcess.start(
      pool,
      originEnv({ ORIGIN_AUTH_HEADER: 'X-Auth-Token: wrong-token-value-123' }),
    ).ready();
    const reply = await request(imageId, 'node-3');
    expect(reply).toMatchObject({ status: 'failed', reason: 'ORIGIN_UNAUTHORIZED' });
    expect(reply.detail).toMatch(/401: credentials refused \(header X-Auth-Token\)/);
    expect(JSON.stringify(reply)).not.toContain('wrong-token-value-123');
    expect(conductor.child.output.join('')).not.toContain('wrong-token-value-123');
    await nothingPublished(imageId, 'node-3');
  });
});
