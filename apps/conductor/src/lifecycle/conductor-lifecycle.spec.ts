import { describe, expect, it } from 'vitest';
import { ReasonError, cellTopology } from '@app/contracts';
import type { NodeLockManager } from '@app/locking';
import type { Delivery } from '@app/messaging';
import { ConductorLifecycle, type QueueHandler } from './conductor-lifecycle';
import {
  FakeBrokerConnection,
  FakePublisher,
  consumeMessage,
  settle,
} from '../../../../test/support/amqp-fakes';
import { deferred } from '../../../../test/support/async';
import { recordingLogger } from '../../../../test/support/recording-logger';

const topology = cellTopology('spec-cell');

/**
 * An intake over a real Consumer on a fake connection. Every step of a stop is written to `calls`, in
 * order: the channel's cancel, settles and close, the background rounds, the locks, the publisher, the
 * connection.
 */
function intakeWith(handle: (delivery: Delivery, shutdown: AbortSignal) => Promise<void>, graceMs = 60_000) {
  const calls: string[] = [];
  const log = recordingLogger();
  const broker = new FakeBrokerConnection(log, calls);
  const publisher = new FakePublisher(calls);
  const shutdown = new AbortController();
  const backgroundStop = deferred();
  const background = {
    start: () => calls.push('background.start'),
    stop: async () => {
      calls.push('background.stop');
      await backgroundStop.promise;
      calls.push('background.stopped');
    },
  };
  const locks = {
    releaseAll: async () => {
      calls.push('locks.releaseAll');
    },
  } as unknown as NodeLockManager;
  const handler: QueueHandler = { handle: (d: Delivery) => handle(d, shutdown.signal) };
  const intake = new ConductorLifecycle({
    broker: broker.asConnection,
    publisher: publisher.asPublisher,
    topology,
    handler,
    locks,
    background: [background],
    concurrency: 3,
    graceMs,
    shutdown,
    log,
  });
  return { intake, broker, calls, shutdown, backgroundStop };
}

function requestMessage() {
  return consumeMessage({ v: 1, requestId: 'r-1', imageId: 'img', destination: 'node-b' });
}

describe('ConductorLifecycle', () => {
  it('starts the connection, consumes the request queue with prefetch = concurrency, then the rounds', async () => {
    const { intake, broker, calls } = intakeWith(async (d) => void d.ack());
    await intake.start();
    expect(intake.state).toBe('consuming');
    expect(intake.consumerSubscribed).toBe(true);
    const channel = broker.lastChannel;
    expect(channel.prefetchCount).toBe(3);
    expect([...channel.consumers.values()].map((c) => c.queue)).toEqual([topology.requestQueue.name]);
    expect(calls).toEqual(['broker.start', 'background.start']);
  });

  it('a graceful stop: no new work, copies in flight finish, then rounds, locks, publisher, connection', async () => {
    const release = deferred();
    let abortedWhenDone: boolean | undefined;
    const { intake, broker, calls, backgroundStop } = intakeWith(async (d, shutdown) => {
      await release.promise;
      abortedWhenDone = shutdown.aborted;
      d.ack();
    });
    await intake.start();
    broker.lastChannel.deliver(requestMessage());
    expect(intake.inFlightDeliveries).toBe(1);

    const stopped = intake.stop();
    expect(intake.state).toBe('draining');
    await settle();
    expect(calls).toContain('channel.cancel');
    expect(intake.consumerSubscribed).toBe(false);
    expect(calls).not.toContain('locks.releaseAll');

    release.resolve();
    await settle();
    // Locks stay until the background rounds have stopped.
    expect(calls).not.toContain('locks.releaseAll');
    backgroundStop.resolve();
    await stopped;

    expect(abortedWhenDone).toBe(false);
    expect(intake.state).toBe('stopped');
    expect(calls.slice(calls.indexOf('channel.cancel'))).toEqual([
      'channel.cancel',
      'channel.ack',
      'channel.close',
      'background.stopped',
      'locks.releaseAll',
      'publisher.close',
      'broker.close',
    ]);
  });

  it('when the grace period is over: copies are aborted, handed back, and only then are locks released', async () => {
    let reason: unknown;
    const { intake, broker, calls, backgroundStop } = intakeWith(
      (d, shutdown) =>
        new Promise<void>((resolve) =>
          shutdown.addEventListener('abort', () => {
            reason = shutdown.reason;
            // An aborted copy takes a moment to clean up before it hands its delivery back.
            void settle().then(() => {
              d.nackRequeue();
              resolve();
            });
          }),
        ),
      0,
    );
    await intake.start();
    broker.lastChannel.deliver(requestMessage());
    backgroundStop.resolve();
    await intake.stop();

    expect(reason).toBeInstanceOf(ReasonError);
    expect((reason as ReasonError).code).toBe('SHUTTING_DOWN');
    expect(broker.lastChannel.nacks.map((n) => n.requeue)).toEqual([true]);
    expect(calls.indexOf('channel.requeue')).toBeLessThan(calls.indexOf('locks.releaseAll'));
    expect(calls.indexOf('channel.close')).toBeLessThan(calls.indexOf('locks.releaseAll'));
  });

  it('aborts the shutdown signal for the background rounds even when nothing was in flight', async () => {
    const { intake, shutdown, backgroundStop } = intakeWith(async (d) => void d.ack());
    await intake.start();
    backgroundStop.resolve();
    await intake.stop();
    expect(shutdown.signal.aborted).toBe(true);
  });

  it('stops once: a second stop() while draining does nothing', async () => {
    const { intake, calls, backgroundStop } = intakeWith(async (d) => void d.ack());
    await intake.start();
    const first = intake.stop();
    const second = intake.stop();
    backgroundStop.resolve();
    await Promise.all([first, second]);
    expect(calls.filter((c) => c === 'broker.close')).toHaveLength(1);
    expect(calls.filter((c) => c === 'background.stop')).toHaveLength(1);
  });
});
