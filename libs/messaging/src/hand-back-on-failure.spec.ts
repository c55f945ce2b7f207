import { afterEach, describe, expect, it, vi } from 'vitest';
import { consumeMessage, fakeDelivery } from '../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../test/support/recording-logger';
import { REQUEUE_PAUSE_MS, handBackOnFailure } from './hand-back-on-failure';

const WARNING = 'could not finish; handing it back';

function setup() {
  const log = recordingLogger();
  const shutdown = new AbortController();
  const fake = fakeDelivery(consumeMessage({ v: 1 }, { messageId: 'm-1' }), log);
  return { log, shutdown, ...fake };
}

const failing = () => Promise.reject(new Error('confirm refused'));

afterEach(() => {
  vi.useRealTimers();
});

describe('handBackOnFailure', () => {
  it('work that succeeds leaves the delivery to the work: nothing logged, nothing handed back', async () => {
    const { log, shutdown, delivery } = setup();
    const handedBack = vi.fn();
    await handBackOnFailure(delivery, async () => void delivery.ack(), {
      log,
      shutdown: shutdown.signal,
      warning: WARNING,
      onHandedBack: handedBack,
    });
    expect(delivery.outcome).toBe('acked');
    expect(log.entries).toEqual([]);
    expect(handedBack).not.toHaveBeenCalled();
  });

  it('work that fails: a warning with the error, the pause, then the message back in the queue', async () => {
    vi.useFakeTimers();
    const { log, shutdown, delivery, channel } = setup();
    const handedBack = vi.fn();
    const handled = handBackOnFailure(delivery, failing, {
      log,
      shutdown: shutdown.signal,
      warning: WARNING,
      onHandedBack: handedBack,
    });
    await vi.advanceTimersByTimeAsync(REQUEUE_PAUSE_MS - 1);
    expect(delivery.settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await handled;
    expect(delivery.outcome).toBe('requeued');
    expect(channel.nacks.map((n) => n.requeue)).toEqual([true]);
    expect(handedBack).toHaveBeenCalledTimes(1);
    expect(log.entries).toEqual([
      { level: 'warn', msg: WARNING, obj: { err: 'confirm refused', messageId: 'm-1' } },
    ]);
  });

  it('at shutdown the message goes back at once, with the warning unless asked to be quiet', async () => {
    vi.useFakeTimers();
    for (const quietAtShutdown of [false, true]) {
      const { log, shutdown, delivery } = setup();
      shutdown.abort();
      void handBackOnFailure(delivery, failing, {
        log,
        shutdown: shutdown.signal,
        warning: WARNING,
        quietAtShutdown,
      });
      await vi.advanceTimersByTimeAsync(0);
      expect(delivery.outcome).toBe('requeued');
      expect(log.entries.map((e) => e.msg)).toEqual(quietAtShutdown ? [] : [WARNING]);
    }
  });

  it('a delivery dropped with its channel is not handed back, and nothing else is said', async () => {
    const { log, shutdown, delivery, channel } = setup();
    const handedBack = vi.fn();
    const dropped = vi.fn(async () => {
      delivery.markLost();
      return true;
    });
    await handBackOnFailure(delivery, failing, {
      log,
      shutdown: shutdown.signal,
      warning: WARNING,
      droppedWithItsChannel: dropped,
      onHandedBack: handedBack,
    });
    expect(dropped).toHaveBeenCalledWith(delivery, new Error('confirm refused'));
    expect(delivery.outcome).toBe('lost');
    expect(channel.nacks).toEqual([]);
    expect(handedBack).not.toHaveBeenCalled();
    expect(log.entries).toEqual([]);
  });

  it('a nack the broker cannot take (the channel died meanwhile) is not counted as handed back', async () => {
    vi.useFakeTimers();
    const { log, shutdown, delivery, lease } = setup();
    const handedBack = vi.fn();
    const handled = handBackOnFailure(delivery, failing, {
      log,
      shutdown: shutdown.signal,
      warning: WARNING,
      droppedWithItsChannel: async () => false,
      onHandedBack: handedBack,
    });
    lease.open = false;
    await vi.advanceTimersByTimeAsync(REQUEUE_PAUSE_MS);
    await handled;
    expect(delivery.outcome).toBe('lost');
    expect(handedBack).not.toHaveBeenCalled();
  });
});
