import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AdminHttp, metricValue } from './support/admin-http';
import { until } from './support/async';
import { conductorTestbed } from './support/conductor-harness';
import { PROJECT_ROOT } from './support/child-processes';
import { ConductorProcess } from './support/conductor-process';

const MiB = 1024 * 1024;
const TOKEN = 'admin-http-test-token-0123456789';
const BIG = 'big.qcow2';
const SMALL = 'small.qcow2';
const DESTINATIONS = ['node-b', 'node-c', 'node-d'];
const PROTECTED = ['/status', '/locks', '/locks?node=node-a', '/metrics'];
/** Read here, not through the product's reader: the one source of the version is package.json. */
const PACKAGE_VERSION = (
  JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

interface Status {
  conductorId: string;
  cellId: string;
  version: string;
  uptimeSeconds: number;
  broker: { state: string; connected: boolean; reconnects: number; lastError: string | null };
  consumer: { state: string; subscribed: boolean; queue: string };
  concurrency: number;
  sourceReads: { limitPerNode: number; inUse: Record<string, number> };
  inFlight: {
    key: string;
    imageId: string;
    source: string | null;
    destination: string;
    requestIds: string[];
    phase: string;
    bytesDone: number;
    bytesTotal: number;
    lockWaitMs: number | null;
  }[];
  totals: Record<string, number> & { failedByReason: Record<string, number> };
  queues: {
    request: { messages: number; consumers: number };
    retry: { messages: number; delayMs: number }[];
    deadLetter: { messages: number };
  } | null;
}

interface Locks {
  entries: {
    node: string;
    imageId: string;
    mode: string;
    holder?: { conductorId: string; attemptId: string };
    generation?: number;
    ageMs: number;
    liveness: string;
    heldHere: boolean;
  }[];
  staleMs: number;
  note: string;
}

describe('admin endpoint over real HTTP', () => {
  const bed = conductorTestbed(['node-a', ...DESTINATIONS]);
  const pool = bed.pool;

  it('shows copies in flight with growing bytes, their locks and queue depths; totals and /metrics match what happened', async () => {
    const c = bed.cell!;
    const big = await c.seed('node-a', BIG, 512 * MiB);
    const small = await c.seed('node-a', SMALL, 2 * MiB);
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'admin-http', ADMIN_TOKEN: TOKEN, COPY_CONCURRENCY: '2' }),
    ).ready();
    const http = AdminHttp.of(conductor, TOKEN);

    const idle = await http.json<Status>('/status');
    expect(idle).toMatchObject({
      conductorId: 'admin-http',
      cellId: c.cellId,
      version: PACKAGE_VERSION,
      broker: { state: 'connected', connected: true, reconnects: 0, lastError: null },
      consumer: { state: 'consuming', subscribed: true, queue: c.topology.requestQueue.name },
      concurrency: 2,
      inFlight: [],
      totals: {
        completed: 0,
        alreadyPresent: 0,
        failed: 0,
        retried: 0,
        deadLettered: 0,
        handedBack: 0,
        coalesced: 0,
        bytes: 0,
        lockTakeovers: 0,
        locksLost: 0,
      },
      queues: { request: { messages: 0, consumers: 1 }, deadLetter: { messages: 0 } },
      sourceReads: { limitPerNode: 4, inUse: {} },
      cacheCleaner: { enabled: false, rounds: 0, running: false, nextRoundAt: null, lastRound: null },
    });
    expect(idle.queues!.retry.map((r) => r.delayMs)).toEqual(c.topology.retryDelaysMs);
    expect((await http.json<Locks>('/locks')).entries).toEqual([]);

    // Three big copies with two at a time: the third waits in the queue.
    const sent = DESTINATIONS.map((destination) =>
      bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: `big-${destination}`,
        imageId: BIG,
        destination,
        source: 'node-a',
        sha256: big.sha256,
      }),
    );

    // The same copy seen twice with more bytes done the second time.
    const seen = new Map<string, number>();
    const grown = await until(
      async () => {
        const status = await http.json<Status>('/status');
        for (const copy of status.inFlight) {
          if (copy.phase !== 'copying' || copy.bytesDone === 0) continue;
          const before = seen.get(copy.key);
          if (before !== undefined && copy.bytesDone > before) return { copy, before, status };
          seen.set(copy.key, copy.bytesDone);
        }
        return undefined;
      },
      'a copy in flight whose bytes grow',
      60_000,
    );
    expect(grown.copy).toMatchObject({
      imageId: BIG,
      source: 'node-a',
      bytesTotal: big.size,
      lockWaitMs: null,
    });
    expect(grown.copy.requestIds).toEqual([`big-${grown.copy.destination}`]);
    expect(grown.copy.bytesDone).toBeLessThanOrEqual(big.size);
    // Copies reading node-a hold its read slots (NODE_READ_LIMIT) while they run.
    expect(grown.status.sourceReads.inUse['node-a']).toBeGreaterThanOrEqual(1);

    // Its locks: the destination exclusive and the source shared, both held by this conductor.
    const locks = await until(
      async () => {
        const answer = await http.json<Locks>('/locks');
        return answer.entries.some((e) => e.node === grown.copy.destination && e.mode === 'exclusive')
          ? answer
          : undefined;
      },
      'the lock table during a copy',
      10_000,
    );
    expect(locks.entries.find((e) => e.node === grown.copy.destination)).toMatchObject({
      imageId: BIG,
      mode: 'exclusive',
      holder: {
        conductorId: 'admin-http',
        attemptId: expect.stringContaining(`big-${grown.copy.destination}`),
      },
      generation: expect.any(Number),
      liveness: 'live',
      heldHere: true,
    });
    expect(
      locks.entries
        .filter((e) => e.node === 'node-a')
        .every((e) => e.mode === 'shared' && e.heldHere && e.liveness === 'live'),
    ).toBe(true);
    expect(locks.entries.some((e) => e.node === 'node-a')).toBe(true);
    expect(locks.staleMs).toBe(2000);
    const sourceOnly = await http.json<Locks>('/locks?node=node-a');
    expect(sourceOnly.entries.length).toBeGreaterThan(0);
    expect(sourceOnly.entries.every((e) => e.node === 'node-a' && e.imageId === BIG)).toBe(true);
    expect(
      (await http.json<Locks>(`/locks?node=${grown.copy.destination}&image=${BIG}`)).entries,
    ).toHaveLength(1);
    expect((await http.json<Locks>(`/locks?image=${SMALL}`)).entries).toEqual([]);

    // The third request waits in the request queue while two copies run (prefetch = concurrency).
    const waiting = await until(
      async () => {
        const status = await http.json<Status>('/status');
        return status.inFlight.length === 2 && status.queues!.request.messages === 1 ? status : undefined;
      },
      'two copies in flight and one request queued',
      5_000,
    ).catch(() => undefined);
    // (Only checked when the first copies were still running when we looked: a fast machine may be past it.)
    if (waiting) expect(waiting.consumer).toMatchObject({ state: 'consuming', subscribed: true });

    for (const id of sent)
      expect(await bed.client!.finalReply(id, 120_000)).toMatchObject({ status: 'completed' });

    // More outcomes to count: two small copies, one no-op, one permanent failure.
    const more = [
      bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: 'small-b',
        imageId: SMALL,
        destination: 'node-b',
        source: 'node-a',
        sha256: small.sha256,
      }),
      bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: 'small-c',
        imageId: SMALL,
        destination: 'node-c',
        source: 'node-a',
      }),
      bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: 'again-b',
        imageId: BIG,
        destination: 'node-b',
        sha256: big.sha256,
      }),
      bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: 'bad-sum',
        imageId: SMALL,
        destination: 'node-d',
        source: 'node-a',
        sha256: '0'.repeat(64),
      }),
    ];
    const answers = await Promise.all(more.map((id) => bed.client!.finalReply(id, 60_000)));
    expect(answers.map((a) => [a.requestId, a.status, a.reason])).toEqual([
      ['small-b', 'completed', undefined],
      ['small-c', 'completed', undefined],
      ['again-b', 'already-present', undefined],
      ['bad-sum', 'failed', 'CHECKSUM_MISMATCH'],
    ]);

    // The result is published before the counters move: wait for the totals to settle.
    const done = await until(
      async () => {
        const status = await http.json<Status>('/status');
        return status.totals.completed + status.totals.alreadyPresent + status.totals.failed === 7
          ? status
          : undefined;
      },
      'the totals of seven answered requests',
      10_000,
    );
    const copiedBytes = 3 * big.size + 2 * small.size;
    expect(done.inFlight).toEqual([]);
    expect(done.totals).toMatchObject({
      completed: 5,
      alreadyPresent: 1,
      failed: 1,
      failedByReason: { CHECKSUM_MISMATCH: 1 },
      deadLettered: 1,
      retried: 0,
      handedBack: 0,
      bytes: copiedBytes,
    });
    // The queue depths are cached for about a second.
    const depths = await until(
      async () => {
        const status = await http.json<Status>('/status');
        return status.queues?.deadLetter.messages === 1 ? status.queues : undefined;
      },
      'the dead letter in the queue depths',
      5_000,
    );
    expect(depths.request.messages).toBe(0);

    const metrics = await http.get('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain;.*version=0\.0\.4/);
    const m = (name: string, labels: Record<string, string> = {}) => metricValue(metrics.text, name, labels);
    expect(m('icc_results_total', { status: 'completed', reason: '' })).toBe(done.totals.completed);
    expect(m('icc_results_total', { status: 'already-present', reason: '' })).toBe(
      done.totals.alreadyPresent,
    );
    expect(m('icc_results_total', { status: 'failed', reason: 'CHECKSUM_MISMATCH' })).toBe(1);
    expect(m('icc_dead_lettered_total', { reason: 'CHECKSUM_MISMATCH' })).toBe(done.totals.deadLettered);
    expect(m('icc_bytes_copied_total')).toBe(copiedBytes);
    expect(m('icc_copy_duration_seconds_count', { status: 'completed' })).toBe(5);
    expect(m('icc_lock_wait_seconds_count')).toBe(5); // observed with each completed copy's result
    expect(m('icc_copies_in_flight')).toBe(0);
    expect(m('icc_broker_connected')).toBe(1);
    expect(m('icc_broker_reconnects')).toBe(0);
    expect(metrics.text).toMatch(
      new RegExp(
        `^icc_build_info\\{version="${PACKAGE_VERSION.replace(/\./g, '\\.')}",protocols="wire=1,[^"]*"\\} 1$`,
        'm',
      ),
    );
    expect(conductor.logs().find((l) => l.msg === 'conductor started')?.version).toBe(PACKAGE_VERSION);
    expect(metrics.text).toContain('# TYPE icc_copy_duration_seconds histogram');
    expect(metrics.text).toContain('# TYPE icc_lock_wait_seconds histogram');

    // Everything released: no lock left to show.
    expect((await http.json<Locks>('/locks')).entries).toEqual([]);
    const ready = await http.get('/health/ready', { authorization: null });
    expect(ready.status).toBe(200);
    expect(ready.json()).toMatchObject({
      status: 'ok',
      details: {
        consumer: { status: 'up' },
        broker: { status: 'up' },
        cacheRoot: { status: 'up', writable: true },
      },
    });
    const live = await http.get('/health/live', { authorization: null });
    expect(live.status).toBe(200);
    expect(live.json()).toMatchObject({
      status: 'ok',
      details: { process: { status: 'up', pid: conductor.pid } },
    });
  });

  it('guards every data route with the bearer token, keeps health and the empty page shell open, and answers 400 and 404 as JSON', async () => {
    const c = bed.cell!;
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'admin-auth', ADMIN_TOKEN: TOKEN }),
    ).ready();
    const http = AdminHttp.of(conductor, TOKEN);
    const wrong = [
      null,
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      'Bearer wrong-token-of-some-length',
      TOKEN,
      `Basic ${TOKEN}`,
    ];
    for (const path of [...PROTECTED, '/locks?node=../x']) {
      for (const authorization of wrong) {
        const answer = await http.get(path, { authorization });
        expect(answer.status, `${path} with ${String(authorization)}`).toBe(401);
        expect(answer.headers.get('www-authenticate')).toBe('Bearer realm="icc-admin"');
        expect(answer.json()).toMatchObject({ statusCode: 401, message: expect.any(String) });
        expect(answer.text).not.toContain('admin-auth'); // nothing about the conductor leaks
      }
      expect((await http.get(path)).status, path).toBe(path.includes('..') ? 400 : 200);
    }

    // Health is open, and so is the page shell, which holds no data.
    expect((await http.get('/health/live', { authorization: null })).status).toBe(200);
    expect((await http.get('/health/ready', { authorization: null })).status).toBe(200);
    const page = await http.get('/', { authorization: null });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(page.text).toContain('<title>image-cache-conductor</title>');
    expect(page.text).not.toContain('admin-auth');
    expect(page.text).not.toContain(c.cellId);

    // Bad parameters: 400 naming the parameter and the reason.
    const bad: [string, string, RegExp][] = [
      ['/locks?node=../x', 'node', /\.\./],
      ['/locks?node=%2Fetc', 'node', /letters, digits/],
      ['/locks?image=a%2Fb', 'image', /letters, digits/],
      ['/locks?image=', 'image', /empty/],
      ['/locks?node=a&node=b', 'node', /once/],
      ['/locks?bogus=1', 'bogus', /unknown parameter/],
      [`/locks?node=${'n'.repeat(65)}`, 'node', /at most 64/],
    ];
    for (const [path, parameter, reason] of bad) {
      const answer = await http.get(path);
      expect(answer.status, path).toBe(400);
      const body = answer.json<{
        statusCode: number;
        message: string;
        problems: { parameter: string; reason: string }[];
      }>();
      expect(body.statusCode).toBe(400);
      expect(body.problems, path).toEqual([{ parameter, reason: expect.stringMatching(reason) }]);
      expect(body.message).toContain(parameter);
    }

    // Unknown routes and methods: 404.
    for (const path of ['/nope', '/status/extra', '/locks/node-a', '/health']) {
      const answer = await http.get(path);
      expect(answer.status, path).toBe(404);
      expect(answer.json()).toMatchObject({ statusCode: 404 });
    }
    expect((await http.get('/status', { method: 'POST' })).status).toBe(404);
    expect((await http.get('/metrics', { method: 'DELETE' })).status).toBe(404);
  });

  it('without ADMIN_TOKEN listens on 127.0.0.1 only, with open routes, and says so in its log', async () => {
    const c = bed.cell!;
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({ CONDUCTOR_ID: 'admin-open', ADMIN_HOST: '0.0.0.0' }),
    ).ready();
    const started = await conductor.waitForLog((l) => l.msg === 'conductor started', 'start');
    expect(started.adminHost).toBe('127.0.0.1');
    const warning = await conductor.waitForLog(
      (l) => typeof l.msg === 'string' && l.msg.startsWith('ADMIN_TOKEN is not set'),
      'the open-admin warning',
    );
    expect(warning.msg).toMatch(/127\.0\.0\.1 only.*open/);
    const http = AdminHttp.of(conductor);
    for (const path of PROTECTED) expect((await http.get(path)).status, path).toBe(200);
    expect((await http.json<Status>('/status')).conductorId).toBe('admin-open');
    // Still validated.
    expect((await http.get('/locks?node=../x')).status).toBe(400);
  });
});
