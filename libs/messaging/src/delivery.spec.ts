import { describe, expect, it } from 'vitest';
import { type DeliveryOutcome, settleStep } from './delivery';
import { consumeMessage, fakeDelivery } from '../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../test/support/recording-logger';

const message = () => consumeMessage({ n: 1 });
const messages = (log: ReturnType<typeof recordingLogger>) => log.entries.map((e) => e.msg);

describe('Delivery', () => {
  it('settles once: a second ack or a nack after it sends nothing and says so', () => {
    const log = recordingLogger();
    const { delivery, channel } = fakeDelivery(message(), log);
    expect(delivery.ack()).toBe(true);
    expect(delivery.ack()).toBe(false);
    expect(delivery.nackRequeue()).toBe(false);
    expect(channel.acks).toHaveLength(1);
    expect(channel.nacks).toEqual([]);
    expect(delivery.outcome).toBe('acked');
    expect(messages(log)).toContain('delivery already settled; ignored');
  });

  it('on a channel that is gone: nothing sent (another channel would refuse the tag), outcome lost', () => {
    const log = recordingLogger();
    const { delivery, channel, lease } = fakeDelivery(message(), log);
    lease.open = false;
    expect(delivery.ack()).toBe(false);
    expect(channel.acks).toEqual([]);
    expect(delivery.outcome).toBe('lost');
    // A lost delivery is not "already settled" noise.
    expect(delivery.nackRequeue()).toBe(false);
    expect(messages(log)).not.toContain('delivery already settled; ignored');
  });

  it('when amqplib throws (the channel closed before we heard of it): lost, not thrown', () => {
    const log = recordingLogger();
    const { delivery, channel } = fakeDelivery(message(), log);
    channel.closed = true;
    expect(delivery.nackRequeue()).toBe(false);
    expect(delivery.outcome).toBe('lost');
  });

  it('reject() dead-letters through the queue: nack without requeue', () => {
    const { delivery, channel } = fakeDelivery(message(), recordingLogger());
    expect(delivery.reject()).toBe(true);
    expect(channel.nacks.map((n) => n.requeue)).toEqual([false]);
  });
});

describe('what settling a delivery does', () => {
  it.each<[DeliveryOutcome | undefined, boolean, ReturnType<typeof settleStep>]>([
    [undefined, true, 'send'],
    [undefined, false, 'channel-gone'],
    ['acked', true, 'already-settled'],
    ['requeued', false, 'already-settled'],
    ['rejected', true, 'already-settled'],
    ['lost', true, 'already-lost'],
    ['lost', false, 'already-lost'],
  ])('outcome so far %s, channel open %s: %s', (previous, open, step) => {
    expect(settleStep(previous, open)).toBe(step);
  });
});
