import { describe, expect, it } from 'vitest';
import { renderStatus } from './status-render';

const NOW = Date.parse('2025-01-31T12:00:10Z');

describe('renderStatus', () => {
  it('lays out a full status document', () => {
    const text = renderStatus(
      {
        conductorId: 'c-1',
        cellId: 'prod',
        broker: { state: 'connected', reconnects: 0 },
        consumer: { state: 'consuming', subscribed: true },
        inFlight: [
          {
            imageId: 'img',
            source: 'node-a',
            destination: 'node-b',
            requestIds: ['r1', 'r2'],
            phase: 'copying',
            bytesDone: 512 * 1024 * 1024,
            bytesTotal: 1024 * 1024 * 1024,
            startedAt: '2025-01-31T12:00:00Z',
            lockWaitMs: null,
          },
        ],
        totals: { completed: 3, bytes: 3 * 1024 * 1024 },
        queues: {
          request: { name: 'icc.prod.requests', messages: 2, consumers: 1 },
          retry: [{ name: 'icc.prod.retry.1000ms', messages: 0, consumers: 0 }],
          checkedAt: '2025-01-31T12:00:09Z',
        },
      },
      NOW,
    );
    expect(text).toContain('broker.state');
    expect(text).toContain('r1, r2');
    expect(text).toContain('node-a -> node-b');
    expect(text).toContain('512 MiB/1.0 GiB (50%)');
    expect(text).toContain('10.0 s ago');
    expect(text).toContain('3.0 MiB');
    expect(text).toMatch(/icc\.prod\.requests\s*│ 2/);
    expect(text).toContain('icc.prod.retry.1000ms');
  });

  it('tolerates missing, unknown and odd fields', () => {
    expect(renderStatus({}, NOW)).toBe('');
    expect(renderStatus({ inFlight: [] }, NOW)).toBe('In flight: none');
    expect(renderStatus('ok', NOW)).toBe('status: ok');
    const text = renderStatus(
      {
        conductorId: 'c',
        queues: null,
        extra: { deep: { x: 1 } },
        list: [1, 2],
        inFlight: [{ something: 'else' }],
      },
      NOW,
    );
    expect(text).toMatch(/extra:\n[^]*deep/);
    expect(text).toMatch(/queues\s*│ -/);
    expect(text).toContain('something');
    expect(text).toContain('1, 2');
  });
});
