import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { AdminHttp } from './support/admin-http';
import { until } from './support/async';
import { conductorTestbed } from './support/conductor-harness';
import { ConductorProcess } from './support/conductor-process';

const MiB = 1024 * 1024;
const TOKEN = 'admin-shutdown-test-token-0123';
const IMAGE = 'big.qcow2';
const DESTINATIONS = ['node-b', 'node-c'];

interface Status {
  consumer: { state: string; subscribed: boolean };
  inFlight: { key: string; phase: string; bytesDone: number }[];
}

interface Probe {
  at: number;
  status: number | 'refused';
  body?: { status: string; details?: Record<string, { status: string; state?: string }> };
  /** Whether 'conductor stopped' (logged after the consumer is closed) was in the log before this answer. */
  stoppedBefore: boolean;
}

describe('admin endpoint: readiness during a graceful stop', () => {
  const bed = conductorTestbed(['node-a', ...DESTINATIONS]);
  const pool = bed.pool;

  it('turns not-ready at the start of SIGTERM, while copies finish and HTTP still answers, until the consumer is closed', async () => {
    const c = bed.cell!;
    const image = await c.seed('node-a', IMAGE, 1024 * MiB);
    const conductor = await ConductorProcess.start(
      pool,
      c.conductorEnv({
        CONDUCTOR_ID: 'admin-stop',
        ADMIN_TOKEN: TOKEN,
        COPY_CONCURRENCY: '2',
        SHUTDOWN_GRACE_MS: '120000',
      }),
    ).ready();
    const http = AdminHttp.of(conductor, TOKEN);
    expect((await http.get('/health/ready', { authorization: null })).status).toBe(200);

    const sent = DESTINATIONS.map((destination) =>
      bed.client!.send(c.topology.requestQueue.name, {
        v: 1,
        requestId: `stop-${destination}`,
        imageId: IMAGE,
        destination,
        source: 'node-a',
        sha256: image.sha256,
      }),
    );
    // Copies in flight, early on (so the drain lasts a while).
    await until(
      async () => {
        const status = await http.json<Status>('/status');
        return (
          status.inFlight.length === 2 &&
          status.inFlight.every((copy) => copy.phase === 'copying' && copy.bytesDone > 0)
        );
      },
      'two copies copying',
      60_000,
    );
    expect((await http.get('/health/ready', { authorization: null })).status).toBe(200);
    const stoppedLogged = () => conductor.logs().some((l) => l.msg === 'conductor stopped');

    conductor.signal('SIGTERM');
    const probes: Probe[] = [];
    let statusDuringDrain: Status | undefined;
    const giveUpAt = Date.now() + 60_000; // the two copies take seconds; grace is far longer
    for (;;) {
      if (Date.now() > giveUpAt)
        throw new Error(
          `still serving 60 s after SIGTERM; readiness answers:\n${probes.map((p) => p.status).join(' ')}`,
        );
      const stoppedBefore = stoppedLogged();
      let probe: Probe;
      try {
        const answer = await http.get('/health/ready', { authorization: null });
        probe = { at: Date.now(), status: answer.status, body: answer.json(), stoppedBefore };
      } catch {
        probe = { at: Date.now(), status: 'refused', stoppedBefore };
      }
      probes.push(probe);
      if (probe.status === 'refused') break;
      // Right after the first not-ready answer: the process still serves everything, and still copies.
      if (probe.status === 503 && !statusDuringDrain) statusDuringDrain = await http.json<Status>('/status');
      await new Promise((r) => setTimeout(r, 10));
    }
    const exit = await conductor.exited();
    const report = probes
      .map(
        (p) =>
          `${p.status}${p.body ? ` ${p.body.status} consumer=${p.body.details?.consumer?.state}` : ''}${p.stoppedBefore ? ' (after stop)' : ''}`,
      )
      .join('\n');

    // From the first 503 on, only 503s until the listener closes: never ready again, never a gap.
    const firstNotReady = probes.findIndex((p) => p.status === 503);
    expect(firstNotReady, report).toBeGreaterThanOrEqual(0);
    expect(
      probes.slice(0, firstNotReady).every((p) => p.status === 200),
      report,
    ).toBe(true);
    const afterwards = probes.slice(firstNotReady);
    expect(
      afterwards.slice(0, -1).every((p) => p.status === 503),
      report,
    ).toBe(true);
    expect(afterwards.at(-1)!.status, report).toBe('refused');

    // The first 503 came while the consumer was draining (not yet closed) and the copies still ran.
    const first = probes[firstNotReady]!;
    expect(first.stoppedBefore, report).toBe(false);
    expect(first.body!.details!.consumer!, report).toMatchObject({ status: 'down', state: 'draining' });
    expect(statusDuringDrain!.consumer.state).toBe('draining');
    expect(statusDuringDrain!.inFlight.length).toBeGreaterThan(0);
    // Not a blip: it stayed not-ready through a drain of many answers, most of them before the stop.
    const beforeStop = afterwards.filter((p) => p.status === 503 && !p.stoppedBefore);
    expect(beforeStop.length, report).toBeGreaterThan(5);

    // The graceful stop let both copies finish (long grace): answered completed, nothing handed back.
    for (const id of sent)
      expect(await bed.client!.finalReply(id, 10_000)).toMatchObject({ status: 'completed' });
    const messages = conductor.logs().map((l) => l.msg);
    const paused = messages.indexOf('draining: consumer paused, waiting for copies in flight');
    const stopped = messages.indexOf('conductor stopped');
    expect(paused).toBeGreaterThanOrEqual(0);
    expect(stopped).toBeGreaterThan(paused);
    expect(
      messages.filter((m, i) => m === 'copy request answered' && i > paused && i < stopped),
    ).toHaveLength(2);
    expect(messages).not.toContain('copy handed back to the queue at shutdown');
    expect(exit).toEqual({ code: 0, signal: null });
  });

  it('exits after SIGTERM while a client holds a keep-alive connection busy (a status page or scraper polling)', async () => {
    const conductor = await ConductorProcess.start(
      pool,
      bed.cell!.conductorEnv({ CONDUCTOR_ID: 'admin-stop-keepalive', ADMIN_TOKEN: TOKEN }),
    ).ready();
    // A connection in the middle of a request is never idle, so a plain server.close() waits for it (until
    // Node's 60 s headersTimeout here; forever for a client that polls on one keep-alive connection).
    const socket = net.connect(conductor.adminPort(), '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    socket.on('error', () => undefined); // cut by the conductor: expected
    const cut = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write('GET /health/live HTTP/1.1\r\nHost: conductor\r\n');
    const signalledAt = Date.now();
    conductor.signal('SIGTERM');
    // Far below the 60 s it would take to time the half-sent request out: the conductor cuts it.
    const exit = await Promise.race([
      conductor.exited(),
      new Promise((resolve) => setTimeout(() => resolve('still running 30 s after SIGTERM'), 30_000)),
    ]);
    expect(exit, `exited ${Date.now() - signalledAt} ms after SIGTERM`).toEqual({ code: 0, signal: null });
    await cut;
    expect(conductor.logs().map((l) => l.msg)).toContain('conductor stopped');
  });
});
