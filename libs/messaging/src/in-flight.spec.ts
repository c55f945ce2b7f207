import { afterEach, describe, expect, it, vi } from 'vitest';
import { Delivery } from './delivery';
import { InFlight } from './in-flight';
import { FakeChannel, consumeMessage } from '../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../test/support/recording-logger';

afterEach(() => {
  vi.useRealTimers();
});

/** A real delivery on a channel of the given generation, acked already when `settled`. */
function delivery(channelGeneration: number, settled = false): Delivery {
  const lease = { channel: new FakeChannel(false), channelGeneration, connectionGeneration: 1, open: true };
  const made = new Delivery(lease as never, consumeMessage({ n: 1 }), 'requests', recordingLogger());
  if (settled) made.ack();
  return made;
}

describe('InFlight', () => {
  it('drains at once when nothing is in flight, else when the last one is done', async () => {
    const inFlight = new InFlight();
    expect(await inFlight.drain(10)).toBe(true);
    const [a, b] = [delivery(1), delivery(1)];
    inFlight.add(a);
    inFlight.add(b);
    const drained = inFlight.drain(10_000);
    inFlight.delete(a);
    expect(inFlight.size).toBe(1);
    inFlight.delete(b);
    expect(await drained).toBe(true);
  });

  it('gives up draining after its time', async () => {
    vi.useFakeTimers();
    const inFlight = new InFlight();
    inFlight.add(delivery(1));
    const drained = inFlight.drain(100);
    vi.advanceTimersByTime(100);
    expect(await drained).toBe(false);
  });

  it("names one channel's unsettled deliveries, and marks every unsettled one lost", () => {
    const inFlight = new InFlight();
    const [open, settled, other] = [delivery(1), delivery(1, true), delivery(2)];
    for (const d of [open, settled, other]) inFlight.add(d);
    expect(inFlight.unsettledOf(1)).toEqual([open]);
    inFlight.markUnsettledLost();
    expect([open.outcome, settled.outcome, other.outcome]).toEqual(['lost', 'acked', 'lost']);
  });
});
