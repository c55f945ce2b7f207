import { describe, expect, it } from 'vitest';
import {
  BrokerRotation,
  BrokerUrlError,
  brokerAddress,
  maskBrokerList,
  parseBrokerUrls,
} from './broker-urls';

const A = 'amqp://guest:guest@rabbit-1:5672';
const B = 'amqp://guest:guest@rabbit-2:5673/%2F';
const C = 'amqps://user:secret@rabbit-3';

describe('parseBrokerUrls', () => {
  it('reads one URL and a comma-separated list, blanks around commas allowed', () => {
    expect(parseBrokerUrls(A)).toEqual([A]);
    expect(parseBrokerUrls(` ${A} ,${B},  ${C}`)).toEqual([A, B, C]);
  });

  it('names the bad entry by position, with its password masked', () => {
    const bad = (list: string) => {
      try {
        parseBrokerUrls(list);
      } catch (error) {
        expect(error).toBeInstanceOf(BrokerUrlError);
        return (error as BrokerUrlError).message;
      }
      throw new Error(`accepted ${list}`);
    };
    expect(bad(`${A},http://u:pw@rabbit-2:5672`)).toBe(
      'entry 2 ("http://u:***@rabbit-2:5672"): must start with amqp:// or amqps:// and name a host',
    );
    expect(bad(`${A},,${B}`)).toMatch(/^entry 2 \(""\): is empty/);
    expect(bad(`${A},`)).toMatch(/^entry 2 \(""\): is empty/);
    expect(bad(`${A},${B},amqp://[::1`)).toMatch(/^entry 3 \("amqp:\/\/\[::1"\): is not a valid URL/);
    expect(bad('amqp://')).toMatch(/^entry 1 .*name a host/);
    expect(bad(' , ')).toMatch(/the list is empty/);
    expect(bad(`${A},amqp://u:hunter2@x:bad`)).not.toContain('hunter2');
  });
});

describe('maskBrokerList and brokerAddress', () => {
  it('masks every password and gives host:port with the default port of the scheme', () => {
    expect(maskBrokerList(`${A},${C}`)).toBe('amqp://guest:***@rabbit-1:5672,amqps://user:***@rabbit-3');
    expect(maskBrokerList('nonsense://u:pw@h')).not.toContain('pw');
    expect(brokerAddress(B)).toBe('rabbit-2:5673');
    expect(brokerAddress(C)).toBe('rabbit-3:5671');
    expect(brokerAddress('amqp://h')).toBe('h:5672');
  });
});

describe('BrokerRotation', () => {
  const options = { initialDelayMs: 100, maxDelayMs: 1_000, jitter: 0 };

  it('starts at the head of the list and moves to the next URL on every failure, round and round', () => {
    const rotation = new BrokerRotation([A, B, C], options);
    expect(rotation.first().url).toBe(A);
    expect([1, 2, 3, 4, 5].map(() => rotation.next().url)).toEqual([B, C, A, B, C]);
  });

  it('after a loss, dials the broker after the one it was on, from the shortest delay again', () => {
    const rotation = new BrokerRotation([A, B, C], options);
    rotation.first();
    rotation.next(); // A refused: B
    rotation.succeeded(); // connected to B
    const next = rotation.next(); // B lost
    expect(next).toMatchObject({ url: C, index: 2, delayMs: 100, attempt: 1 });
  });

  it('doubles the delay per failure in a row, capped; a success starts over', () => {
    const rotation = new BrokerRotation([A, B], options);
    rotation.first();
    expect([1, 2, 3, 4, 5, 6].map(() => rotation.next().delayMs)).toEqual([100, 200, 400, 800, 1000, 1000]);
    rotation.succeeded();
    expect(rotation.next().delayMs).toBe(100);
  });

  it('spreads each delay by the jitter fraction, and never beyond the cap', () => {
    const low = new BrokerRotation([A], { ...options, jitter: 0.5, random: () => 0 });
    const high = new BrokerRotation([A], { ...options, jitter: 0.5, random: () => 0.999_999 });
    low.first();
    high.first();
    expect(low.next().delayMs).toBe(50);
    expect(high.next().delayMs).toBe(150);
    for (let i = 0; i < 10; i += 1) {
      expect(low.next().delayMs).toBeGreaterThanOrEqual(0);
      expect(high.next().delayMs).toBeLessThanOrEqual(1_000);
    }
  });

  it('with one URL, always dials that one', () => {
    const rotation = new BrokerRotation([A], options);
    rotation.first();
    expect([1, 2, 3].map(() => rotation.next().url)).toEqual([A, A, A]);
  });
});
