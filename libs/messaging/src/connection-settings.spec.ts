import { describe, expect, it } from 'vitest';
import { brokerList, dialSettings, reconnectPolicy, withHeartbeat } from './connection-settings';

describe('connection settings', () => {
  it('takes the broker list as one string of URLs or as an array, and refuses an empty one', () => {
    expect(brokerList({ url: 'amqp://a:5672,amqp://b:5672' })).toEqual(['amqp://a:5672', 'amqp://b:5672']);
    expect(brokerList({ url: ['amqp://a:5672'] })).toEqual(['amqp://a:5672']);
    expect(() => brokerList({ url: [] })).toThrow('BrokerConnection needs at least one broker URL');
  });

  it('fills the reconnect backoff with its defaults, keeping what is given', () => {
    expect(reconnectPolicy()).toEqual({ initialDelayMs: 200, maxDelayMs: 10_000, jitter: 0.5 });
    expect(reconnectPolicy({ initialDelayMs: 1, jitter: 0 })).toEqual({
      initialDelayMs: 1,
      maxDelayMs: 10_000,
      jitter: 0,
    });
  });

  it.each([
    ['amqp://guest:guest@127.0.0.1:5672', 10, 'amqp://guest:guest@127.0.0.1:5672?heartbeat=10'],
    ['amqp://127.0.0.1:5672/vhost?heartbeat=3', 10, 'amqp://127.0.0.1:5672/vhost?heartbeat=3'],
    ['not a url', 10, 'not a url'],
  ])('a heartbeat in %s (default %s s): %s', (url, seconds, dialled) => {
    expect(withHeartbeat(url, seconds)).toBe(dialled);
  });

  it('dials with the heartbeat, the name the broker shows, the timeout and the TLS material', () => {
    const plain = dialSettings({ url: 'amqp://a:5672', connectionName: 'conductor-1' }, 'amqp://a:5672');
    expect(plain).toEqual({
      url: 'amqp://a:5672?heartbeat=10',
      socketOptions: { clientProperties: { connection_name: 'conductor-1' }, timeout: 10_000 },
    });
    const tls = dialSettings(
      {
        url: 'amqps://a:5671',
        connectionName: 'c',
        heartbeatSeconds: 2,
        connectTimeoutMs: 500,
        tls: { servername: 'rabbit' },
        auth: 'external',
      },
      'amqps://a:5671',
    );
    expect(tls.url).toBe('amqps://a:5671?heartbeat=2');
    expect(tls.socketOptions).toMatchObject({
      servername: 'rabbit',
      credentials: { mechanism: 'EXTERNAL' },
      timeout: 500,
    });
  });
});
