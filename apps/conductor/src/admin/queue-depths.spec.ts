import { describe, expect, it } from 'vitest';
import { cellTopology } from '@app/contracts';
import type { ConnectionState } from '@app/messaging';
import { QueueDepths } from './queue-depths';

/** A broker whose channels answer checkQueue from a table (a missing queue fails, as a 404 would). */
function fakeBroker(depths: Record<string, number>) {
  const broker = {
    state: 'connected' as ConnectionState,
    channelsOpened: 0,
    checks: 0,
    blocked: false,
    /** Every check waits for ever, as on a connection the broker stopped reading. */
    hang: false,
    repairs: [] as string[],
    async repairTopology(cause: string) {
      broker.repairs.push(cause);
    },
    async openChannel() {
      broker.channelsOpened++;
      const channel = {
        on: () => channel,
        close: async () => undefined,
        checkQueue: async (name: string) => {
          broker.checks++;
          if (broker.hang) return new Promise(() => undefined);
          if (!(name in depths))
            throw Object.assign(new Error(`NOT_FOUND - no queue '${name}'`), { code: 404 });
          return {
            queue: name,
            messageCount: depths[name]!,
            consumerCount: name.endsWith('requests') ? 1 : 0,
          };
        },
      };
      return { channel: channel as never, generation: 1 };
    },
  };
  return broker;
}

describe('QueueDepths', () => {
  const topology = cellTopology('c1', { retryDelaysMs: [100, 200] });
  const all = { 'icc.c1.requests': 5, 'icc.c1.retry.100ms': 1, 'icc.c1.retry.200ms': 2, 'icc.c1.dead': 3 };
  const warnings: unknown[] = [];
  const log = { warn: (obj: object) => warnings.push(obj) };

  it('reads every queue of the cell with passive checks, and caches the answer for a second', async () => {
    let now = 0;
    const broker = fakeBroker(all);
    const depths = new QueueDepths({ broker, topology, log, now: () => now });
    const first = await depths.depths();
    expect(first).toEqual({
      request: { name: 'icc.c1.requests', messages: 5, consumers: 1 },
      retry: [
        { name: 'icc.c1.retry.100ms', messages: 1, consumers: 0, delayMs: 100 },
        { name: 'icc.c1.retry.200ms', messages: 2, consumers: 0, delayMs: 200 },
      ],
      deadLetter: { name: 'icc.c1.dead', messages: 3, consumers: 0 },
      checkedAt: new Date(0).toISOString(),
    });
    now = 999;
    await Promise.all([depths.depths(), depths.depths()]);
    expect(broker.checks).toBe(4);
    now = 1000;
    await Promise.all([depths.depths(), depths.depths()]);
    expect(broker.checks).toBe(8); // concurrent callers share one look-up
    expect(broker.channelsOpened).toBe(1);
  });

  it('answers null at once while the broker is not connected', async () => {
    const broker = fakeBroker(all);
    broker.state = 'disconnected';
    expect(await new QueueDepths({ broker, topology, log }).depths()).toBeNull();
    expect(broker.channelsOpened).toBe(0);
  });

  it('answers null when a queue cannot be read, and opens a fresh channel next time', async () => {
    let now = 0;
    const broker = fakeBroker({ 'icc.c1.requests': 1 });
    const depths = new QueueDepths({ broker, topology, log, now: () => now });
    expect(await depths.depths()).toBeNull();
    expect(warnings).toHaveLength(1);
    now = 5000;
    expect(await depths.depths()).toBeNull();
    expect(warnings).toHaveLength(1); // one warning per failure streak
    expect(broker.channelsOpened).toBe(2);
  });

  it('reports a missing queue to the connection, which declares the topology again', async () => {
    const broker = fakeBroker({ 'icc.c1.requests': 1 });
    expect(await new QueueDepths({ broker, topology, log }).depths()).toBeNull();
    expect(broker.repairs).toEqual(['passive check: queue icc.c1.retry.100ms not found']);
  });

  it('never asks a blocked broker, and gives up a look-up that gets no answer, serving the last depths', async () => {
    let now = 0;
    const broker = fakeBroker(all);
    const depths = new QueueDepths({ broker, topology, log, now: () => now, lookupTimeoutMs: 50 });
    const first = await depths.depths();
    expect(first?.request.messages).toBe(5);
    broker.blocked = true;
    broker.hang = true;
    now = 5000;
    const checks = broker.checks;
    expect(await depths.depths()).toEqual(first);
    expect(broker.checks).toBe(checks);
    // Not blocked (yet) but not answering either: bounded by lookupTimeoutMs.
    broker.blocked = false;
    expect(await depths.depths()).toEqual(first);
    expect(broker.checks).toBe(checks + 1);
  });
});
