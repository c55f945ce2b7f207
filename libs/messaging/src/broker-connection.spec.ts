import { afterEach, describe, expect, it, vi } from 'vitest';
import { cellTopology } from '@app/contracts';
import { BrokerConnection } from './broker-connection';
import { BrokerUnavailableError, MessagingClosedError } from './errors';
import { fakeConnect, settle } from '../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../test/support/recording-logger';

const topology = cellTopology('spec-cell');
const TOPOLOGY_NAMES = [
  `queue ${topology.deadLetterQueue.name}`,
  `queue ${topology.requestQueue.name}`,
  ...topology.retryQueues.map((q) => `queue ${q.name}`),
  `queue ${topology.jobQueue.name}`,
  `exchange ${topology.eventsExchange.name}`,
];

function connectionWith(options: { url?: string; topologyCheckMs?: number } = {}) {
  const fake = fakeConnect();
  const connection = new BrokerConnection({
    url: options.url ?? 'amqp://guest:secret@broker.example:5672',
    connectionName: 'conductor-spec',
    topologies: [topology],
    topologyCheckMs: options.topologyCheckMs,
    // Reconnections in a spec come at once: the test decides when each one lands (fake.up()).
    reconnect: { initialDelayMs: 1, maxDelayMs: 1, jitter: 0 },
    logger: recordingLogger(),
    connect: fake.connect,
  });
  const events: string[] = [];
  for (const event of [
    'connected',
    'disconnected',
    'connect-failed',
    'blocked',
    'unblocked',
    'closed',
  ] as const)
    connection.on(event, () => events.push(event));
  return { connection, fake, events };
}

/** start(), then the first connection comes up. */
async function connected(options?: Parameters<typeof connectionWith>[0]) {
  const built = connectionWith(options);
  built.connection.start();
  await built.fake.up();
  return built;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('BrokerConnection', () => {
  it('connects with its name and a heartbeat, returning at once while the broker is away', async () => {
    const { connection, fake } = connectionWith();
    connection.start();
    connection.start(); // idempotent
    await settle();
    expect(fake.calls).toHaveLength(1);
    const [{ url, options }] = fake.calls;
    expect(new URL(url).searchParams.get('heartbeat')).toBe('10');
    expect(options).toMatchObject({
      clientProperties: { connection_name: 'conductor-spec' },
      timeout: 10_000,
    });
    expect(connection.state).toBe('connecting');
    expect(connection.current()).toBeUndefined();
  });

  it('keeps a heartbeat given in the URL', async () => {
    const { connection, fake } = connectionWith({ url: 'amqp://h/?heartbeat=3' });
    connection.start();
    await settle();
    expect(new URL(fake.calls[0]!.url).searchParams.get('heartbeat')).toBe('3');
  });

  it('is connected only once the topology is declared, on a channel of its own that it closes', async () => {
    const { connection, fake, events } = await connected();
    const [declaring] = fake.model().channels;
    expect(declaring!.declared).toEqual(TOPOLOGY_NAMES);
    expect(declaring!.closed).toBe(true);
    expect(connection.state).toBe('connected');
    expect(connection.generation).toBe(1);
    expect(connection.reconnects).toBe(0);
    expect(events).toEqual(['connected']);
    await expect(connection.waitForLive(0)).resolves.toMatchObject({ generation: 1 });
  });

  it('a declaration the broker refuses fails the attempt: not connected, the error kept', async () => {
    const { connection, fake, events } = connectionWith();
    connection.start();
    const refused = new Error('PRECONDITION_FAILED - inequivalent arg');
    const model = await fake.up((m) => {
      const open = m.createChannel.bind(m);
      m.createChannel = async () =>
        Object.assign(await open(), { assertQueue: () => Promise.reject(refused) });
    });
    expect(connection.state).toBe('connecting');
    expect(events).toEqual(['connect-failed']);
    expect(connection.lastError).toBe(refused);
    expect(model.closed).toBe(true); // the half-set-up connection is not kept
  });

  it('a lost connection: disconnected, no live model; the next one is a new generation', async () => {
    const { connection, fake, events } = await connected();
    const waiting = connection.waitForLive(10_000);
    fake.model().down(new Error('socket closed'));
    expect(connection.state).toBe('disconnected');
    expect(connection.current()).toBeUndefined();
    const late = connection.waitForLive(10_000);
    await fake.up();
    await expect(waiting).resolves.toMatchObject({ generation: 1 });
    await expect(late).resolves.toMatchObject({ generation: 2 });
    expect(connection.reconnects).toBe(1);
    expect(events).toEqual(['connected', 'disconnected', 'connected']);
  });

  it('waitForLive gives up with the URL (no password), the state and the last error', async () => {
    const { connection, fake } = connectionWith();
    connection.start();
    await fake.refuse(new Error('ECONNREFUSED'));
    const error = await connection.waitForLive(0).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokerUnavailableError);
    const message = (error as Error).message;
    expect(message).toContain('broker.example');
    expect(message).not.toContain('secret');
    expect(message).toContain('state connecting');
    expect(message).toContain('ECONNREFUSED');
  });

  it('close(): stops recovery, rejects whoever waits, and stays closed', async () => {
    const { connection, fake, events } = connectionWith();
    connection.start();
    await settle();
    const waiting = connection.waitForLive(10_000).catch((e: unknown) => e);
    await connection.close();
    expect(await waiting).toBeInstanceOf(MessagingClosedError);
    expect(connection.state).toBe('closed');
    const late = await fake.up(); // the attempt under way when close() ran lands late
    expect(late.closed).toBe(true);
    expect(connection.state).toBe('closed');
    connection.start();
    expect(fake.calls).toHaveLength(1);
    expect(events).toEqual(['closed']);
  });

  it('tells when the broker blocks it, and a new connection starts unblocked', async () => {
    const { connection, fake, events } = await connected();
    fake.model().emit('blocked', 'low on memory');
    expect(connection.blockedView()).toMatchObject({ blocked: true, reason: 'low on memory' });
    fake.model().emit('unblocked');
    expect(connection.blocked).toBe(false);
    fake.model().emit('blocked', 'disk');
    fake.model().down(new Error('socket closed'));
    await fake.up();
    expect(connection.blocked).toBe(false);
    expect(events).toEqual(['connected', 'blocked', 'unblocked', 'blocked', 'disconnected', 'connected']);
  });

  it('repairTopology(): concurrent reports share one declaration, which is counted with its cause', async () => {
    const { connection, fake } = await connected();
    await Promise.all([connection.repairTopology('queue gone'), connection.repairTopology('same again')]);
    const declarations = fake.model().channels.slice(1);
    expect(declarations).toHaveLength(1);
    expect(declarations[0]!.declared).toEqual(TOPOLOGY_NAMES);
    expect(connection.topologyHealth()).toMatchObject({
      redeclarations: 1,
      lastCause: 'queue gone',
      failures: 0,
    });
  });

  it('repairTopology(): keeps a history per queue found missing, and logs that what a lost queue held is gone', async () => {
    const { connection } = await connected();
    const requests = topology.requestQueue.name;
    const tier = topology.retryQueues[0]!.name;
    // One deletion reported by two parts at once counts once; a second deletion counts again.
    await Promise.all([
      connection.repairTopology(`consumer of ${requests} cancelled by the server`, undefined, requests),
      connection.repairTopology(`passive check: queue ${requests} not found`, undefined, requests),
    ]);
    await connection.repairTopology(`publish to '${tier}' not routed`, undefined, tier);
    await connection.repairTopology(`passive check: queue ${requests} not found`, undefined, requests);
    const { missing, redeclarations } = connection.topologyHealth();
    expect(redeclarations).toBe(3);
    expect(missing).toEqual({
      [requests]: {
        redeclarations: 2,
        lastCause: `passive check: queue ${requests} not found`,
        lastAt: expect.any(String),
      },
      [tier]: { redeclarations: 1, lastCause: `publish to '${tier}' not routed`, lastAt: expect.any(String) },
    });
    const losses = (connection.logger as ReturnType<typeof recordingLogger>).entries
      .filter((e) => e.msg.startsWith('a queue was deleted: the messages it held are gone'))
      .map((e) => e.obj);
    expect(losses).toEqual([
      expect.objectContaining({ queue: requests, times: 1 }),
      expect.objectContaining({ queue: tier, times: 1 }),
      expect.objectContaining({ queue: requests, times: 2 }),
    ]);
  });

  it('repairTopology() while disconnected: rejects after its wait, and the failure is counted', async () => {
    const { connection, fake } = await connected();
    fake.model().down(new Error('gone'));
    await expect(connection.repairTopology('queue gone', 0)).rejects.toBeInstanceOf(BrokerUnavailableError);
    expect(connection.topologyHealth()).toMatchObject({ redeclarations: 0, failures: 1 });
    expect(connection.topologyHealth().lastError).toContain('queue gone');
  });

  it('the periodic passive check declares the topology again when a queue is missing, and only then', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const { connection, fake } = await connected({ topologyCheckMs: 1_000 });
    await vi.advanceTimersByTimeAsync(1_000);
    await settle();
    expect(fake.model().channels).toHaveLength(2); // the declaration's, then the check's
    expect(connection.topologyHealth().redeclarations).toBe(0);
    fake.model().missing.add(topology.retryQueues[0]!.name);
    await vi.advanceTimersByTimeAsync(1_000);
    await settle();
    expect(connection.topologyHealth()).toMatchObject({
      redeclarations: 1,
      lastCause: `passive check: queue ${topology.retryQueues[0]!.name} not found`,
    });
  });
});
