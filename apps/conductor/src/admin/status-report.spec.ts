import { describe, expect, it } from 'vitest';
import { type CleanReport, resolveCleanerPolicy } from '@app/cache-cleaner';
import type { InFlightCopy } from '../copy/copy-coordinator';
import { CleanerRounds } from '../background/cleaner-rounds';
import { NodeBandwidth } from '../copy/node-bandwidth';
import { ReadSlots } from '../copy/read-slots';
import { ConductorMetrics } from '../metrics/conductor-metrics';
import type { QueueDepthReport } from './queue-depths';
import { StatusReport, type StatusReportParts } from './status-report';

/** A cleaner's report for a node where one unused 10-byte image was deleted. */
function cleanedOneImage(node: string): CleanReport {
  return {
    node,
    dryRun: false,
    startedAt: '2030-01-01T00:00:00.000Z',
    durationMs: 1,
    policy: resolveCleanerPolicy({}),
    examined: 2,
    deleted: [{ imageId: 'old', size: 10, why: 'unused' }],
    keptPinned: [],
    skippedBusy: [],
    keptChanged: [],
    errors: [],
    tmpSwept: 0,
    litterRemoved: [],
    bytesBefore: 15,
    bytesFreed: 10,
    bytesAfter: 5,
    overBudget: false,
    aborted: false,
  };
}

function parts(overrides: Partial<StatusReportParts> = {}) {
  let now = Date.parse('2030-01-01T00:00:00Z');
  let mono = 10_000;
  const copies: InFlightCopy[] = [];
  const stats = new ConductorMetrics();
  const slots = new ReadSlots(4);
  const quiet = { info: () => undefined, warn: () => undefined, debug: () => undefined };
  const cleaning = new CleanerRounds(
    { clean: async (node: string) => cleanedOneImage(node) },
    { enabled: true, intervalMs: 60_000, listNodes: async () => ['n1', 'n2'], log: quiet },
  );
  const queues: QueueDepthReport = {
    request: { name: 'icc.c1.requests', messages: 3, consumers: 1 },
    retry: [{ name: 'icc.c1.retry.1000ms', messages: 1, consumers: 0, delayMs: 1000 }],
    deadLetter: { name: 'icc.c1.dead', messages: 0, consumers: 0 },
    checkedAt: '2030-01-01T00:00:00.000Z',
  };
  const base: StatusReportParts = {
    identity: {
      conductorId: 'c1',
      cellId: 'cell-1',
      version: '1.2.3',
      concurrency: 4,
      requestQueue: 'icc.c1.requests',
    },
    broker: {
      state: 'connected',
      reconnects: 2,
      lastError: new Error('socket closed'),
      connectionName: 'conductor-c1',
      blockedView: () => ({ blocked: false, reason: null, since: null }),
      endpointView: () => ({
        url: 'amqp://guest:***@rabbit-2:5672',
        address: 'rabbit-2:5672',
        position: 2,
        brokers: 3,
        clusterName: 'rabbit@rabbit-1',
        version: '3.10.8',
      }),
      topologyHealth: () => ({
        redeclarations: 0,
        lastCause: null,
        lastRedeclaredAt: null,
        failures: 0,
        lastError: null,
        missing: {},
      }),
    },
    intake: { state: 'consuming', consumerSubscribed: true, inFlightDeliveries: 1 },
    copies: { inFlight: () => copies },
    stats,
    queues: { depths: async () => queues },
    reads: { readSlots: () => slots.view() },
    cleaner: cleaning,
    sweep: {
      view: () => ({
        enabled: true,
        intervalMs: 60_000,
        rounds: 0,
        running: false,
        nextRoundAt: null,
        totals: { keysCollected: 0, lockEntries: 0, tmpFiles: 0, busy: 0, keysRetired: 0, swarmRecords: 0 },
        lastRound: null,
      }),
    },
    clock: { now: () => now, monotonic: () => mono },
    ...overrides,
  };
  return { base, copies, stats, slots, cleaning, advance: (ms: number) => ((now += ms), (mono += ms)) };
}

describe('StatusReport', () => {
  it('puts identity, broker, consumer, totals and queue depths together', async () => {
    const { base, stats, advance } = parts();
    const report = new StatusReport(base);
    stats.recordResult('completed', undefined, 100, 50, 5);
    stats.recordResult('failed', 'CHECKSUM_MISMATCH', 0, 10);
    stats.recordDeadLetter('CHECKSUM_MISMATCH');
    advance(61_000);
    const status = await report.build();
    expect(status).toMatchObject({
      conductorId: 'c1',
      cellId: 'cell-1',
      version: '1.2.3',
      uptimeSeconds: 61,
      startedAt: '2030-01-01T00:00:00.000Z',
      broker: {
        state: 'connected',
        connected: true,
        reconnects: 2,
        lastError: 'socket closed',
        connectionName: 'conductor-c1',
        endpoint: { url: 'amqp://guest:***@rabbit-2:5672', position: 2, brokers: 3 },
      },
      consumer: { state: 'consuming', subscribed: true, queue: 'icc.c1.requests', deliveriesInFlight: 1 },
      concurrency: 4,
      inFlight: [],
      totals: {
        completed: 1,
        failed: 1,
        failedByReason: { CHECKSUM_MISMATCH: 1 },
        deadLettered: 1,
        bytes: 100,
      },
      queues: {
        request: { messages: 3 },
        retry: [{ delayMs: 1000, messages: 1 }],
        deadLetter: { messages: 0 },
      },
    });
    // A snapshot: later counting does not change an answer already given.
    stats.recordResult('completed', undefined, 1, 1);
    expect(status.totals.completed).toBe(1);
  });

  it('shows the read slots taken per source node and the cleaner schedule with its last round', async () => {
    const { base, slots, cleaning } = parts();
    const report = new StatusReport(base);
    const before = await report.build();
    expect(before.sourceReads).toEqual({ limitPerNode: 4, inUse: {} });
    expect(before.cacheCleaner).toEqual({
      enabled: true,
      intervalMs: 60_000,
      rounds: 0,
      running: false,
      nextRoundAt: null,
      leaseTicks: null,
      lastRound: null,
    });

    const releases = [slots.tryTake('n2'), slots.tryTake('n1'), slots.tryTake('n2')];
    const round = cleaning.runOnce();
    const during = await report.build();
    expect(during.sourceReads.inUse).toEqual({ n1: 1, n2: 2 });
    expect(during.cacheCleaner.running).toBe(true);
    await round;
    cleaning.start();
    const after = await report.build();
    expect(after.cacheCleaner).toMatchObject({
      rounds: 1,
      running: false,
      lastRound: { nodes: 2, deleted: 2, bytesFreed: 20, skippedBusy: 0, failedNodes: 0, aborted: false },
    });
    expect(Date.parse(after.cacheCleaner.nextRoundAt!)).toBeGreaterThan(
      Date.parse(after.cacheCleaner.lastRound!.endedAt) - 1,
    );
    await cleaning.stop();
    expect((await report.build()).cacheCleaner.nextRoundAt).toBeNull();
    for (const release of releases) release?.();
    expect((await report.build()).sourceReads.inUse).toEqual({});
  });

  it('shows the byte-rate caps as configured and the bytes moved through each capped node', async () => {
    const none = { fallback: 0, nodes: {} };
    const bandwidth = new NodeBandwidth({
      read: { fallback: 0, nodes: { n1: 40 * 1024 * 1024 } },
      write: none,
      backgroundRead: { fallback: 10 * 1024 * 1024, nodes: {} },
      backgroundWrite: none,
    });
    const { base } = parts({ bandwidth });
    expect((await new StatusReport(parts().base).build()).bandwidth).toBeNull();
    const pace = bandwidth.pace('n1', 'n2')!;
    await pace.afterRead(1000);
    await pace.beforeWrite(1000); // n2 has no write cap: not counted, not listed
    const status = await new StatusReport(base).build();
    expect(status.bandwidth).toEqual({
      caps: {
        read: { fallback: 0, nodes: { n1: 40 * 1024 * 1024 } },
        write: none,
        backgroundRead: { fallback: 10 * 1024 * 1024, nodes: {} },
        backgroundWrite: none,
      },
      nodes: [
        {
          node: 'n1',
          direction: 'read',
          bytesPerSecond: 40 * 1024 * 1024,
          backgroundBytesPerSecond: 10 * 1024 * 1024,
          bytes: 1000,
        },
      ],
    });
  });

  it('shows each copy in flight with progress, phase and the lock wait so far', async () => {
    const { base, copies, advance } = parts();
    const report = new StatusReport(base);
    copies.push(
      {
        key: 'img -> n2',
        imageId: 'img',
        destination: 'n2',
        source: 'n1',
        requestIds: ['r1', 'r2'],
        phase: 'copying',
        bytesDone: 256,
        bytesTotal: 1024,
        startedAt: '2030-01-01T00:00:00.000Z',
        startedMono: 10_000,
      },
      {
        key: 'img -> n3',
        imageId: 'img',
        destination: 'n3',
        requestIds: ['r3'],
        phase: 'waiting-for-lock',
        bytesDone: 0,
        bytesTotal: 0,
        startedAt: '2030-01-01T00:00:01.000Z',
        startedMono: 11_000,
        lockWaitStartedMono: 11_500,
      },
    );
    advance(3_000);
    const { inFlight } = await report.build();
    expect(inFlight).toEqual([
      {
        key: 'img -> n2',
        imageId: 'img',
        source: 'n1',
        destination: 'n2',
        requestIds: ['r1', 'r2'],
        phase: 'copying',
        bytesDone: 256,
        bytesTotal: 1024,
        percent: 25,
        startedAt: '2030-01-01T00:00:00.000Z',
        elapsedMs: 3000,
        lockWaitMs: null,
      },
      {
        key: 'img -> n3',
        imageId: 'img',
        source: null,
        destination: 'n3',
        requestIds: ['r3'],
        phase: 'waiting-for-lock',
        bytesDone: 0,
        bytesTotal: 0,
        percent: null,
        startedAt: '2030-01-01T00:00:01.000Z',
        elapsedMs: 2000,
        lockWaitMs: 1500,
      },
    ]);
  });

  it('reports a broker that is down, and no queue depths', async () => {
    const { base } = parts({
      broker: {
        state: 'disconnected',
        reconnects: 0,
        lastError: new Error('ECONNREFUSED'),
        connectionName: 'conductor-c1',
        blockedView: () => ({ blocked: false, reason: null, since: null }),
        endpointView: () => ({
          url: null,
          address: null,
          position: null,
          brokers: 1,
          clusterName: null,
          version: null,
        }),
        topologyHealth: () => ({
          redeclarations: 0,
          lastCause: null,
          lastRedeclaredAt: null,
          failures: 0,
          lastError: null,
          missing: {},
        }),
      },
      intake: { state: 'draining', consumerSubscribed: false, inFlightDeliveries: 0 },
      queues: { depths: async () => null },
    });
    const status = await new StatusReport(base).build();
    expect(status.broker).toMatchObject({
      state: 'disconnected',
      connected: false,
      lastError: 'ECONNREFUSED',
    });
    expect(status.consumer).toMatchObject({ state: 'draining', subscribed: false });
    expect(status.queues).toBeNull();
  });

  it('shows a blocked connection and the topology re-declarations, from memory', async () => {
    const topology = {
      redeclarations: 2,
      lastCause: 'consumer of icc.c1.requests cancelled by the server',
      lastRedeclaredAt: '2030-01-01T00:00:00.000Z',
      failures: 0,
      lastError: null,
      missing: {},
    };
    const { base } = parts();
    const status = await new StatusReport({
      ...base,
      broker: {
        ...base.broker,
        blockedView: () => ({ blocked: true, reason: 'low on memory', since: '2030-01-01T00:00:00.000Z' }),
        topologyHealth: () => topology,
      },
    }).build();
    expect(status.broker).toMatchObject({
      blocked: true,
      blockedReason: 'low on memory',
      blockedSince: '2030-01-01T00:00:00.000Z',
    });
    expect(status.topology).toEqual(topology);
  });
});
