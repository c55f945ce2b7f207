import { describe, expect, it } from 'vitest';
import { blockedView, endpointOf, endpointView } from './connection-views';

describe('connection views', () => {
  it('the endpoint: the URL without its password, host:port, 1-based place, and what the broker said', () => {
    const at = endpointOf('amqp://guest:secret@rabbit-2:5672', 1, {
      cluster_name: 'rabbit@c',
      version: '4.1.0',
    });
    expect(endpointView(at, 3)).toEqual({
      url: 'amqp://guest:***@rabbit-2:5672',
      address: 'rabbit-2:5672',
      position: 2,
      brokers: 3,
      clusterName: 'rabbit@c',
      version: '4.1.0',
    });
  });

  it('a broker that names neither its cluster nor its version; no endpoint yet', () => {
    expect(endpointOf('amqps://r:5671', 0, { cluster_name: null })).toEqual({
      url: 'amqps://r:5671',
      index: 0,
      clusterName: null,
      version: null,
    });
    expect(endpointView(undefined, 2)).toEqual({
      url: null,
      address: null,
      position: null,
      brokers: 2,
      clusterName: null,
      version: null,
    });
  });

  it('blocked: why and since when; not blocked: nulls', () => {
    expect(blockedView({ reason: 'low on memory', since: '2026-01-01T00:00:00.000Z' })).toEqual({
      blocked: true,
      reason: 'low on memory',
      since: '2026-01-01T00:00:00.000Z',
    });
    expect(blockedView(undefined)).toEqual({ blocked: false, reason: null, since: null });
  });
});
