import { describe, expect, it, vi } from 'vitest';
import { TypedEvents } from './typed-events';

describe('TypedEvents', () => {
  it('never throws from emit: a throwing listener is logged and the others still run', () => {
    const logger = { debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn() };
    const events = new TypedEvents<{ ping: { n: number } }>(logger);
    const seen: number[] = [];
    events.on('ping', () => {
      throw new Error('boom');
    });
    const off = events.on('ping', ({ n }) => seen.push(n));
    expect(() => events.emit('ping', { n: 1 })).not.toThrow();
    off();
    events.emit('ping', { n: 2 });
    expect(seen).toEqual([1]);
    expect(logger.error).toHaveBeenCalledTimes(2);
  });
});
