import { afterEach, describe, expect, it, vi } from 'vitest';
import { Waiters } from './waiters';

afterEach(() => {
  vi.useRealTimers();
});

describe('Waiters', () => {
  it('answers every waiter with the value once it comes, and forgets them', async () => {
    const waiters = new Waiters<string>();
    const both = Promise.all([
      waiters.wait(1_000, () => new Error('late')),
      waiters.wait(5_000, () => new Error('late')),
    ]);
    expect(waiters.size).toBe(2);
    waiters.resolveAll('live');
    expect(await both).toEqual(['live', 'live']);
    expect(waiters.size).toBe(0);
  });

  it('a waiter whose time is up gets the error made then; the others keep waiting', async () => {
    vi.useFakeTimers();
    const waiters = new Waiters<string>();
    let state = 'connecting';
    const short = waiters.wait(100, () => new Error(`not live (${state})`));
    const long = waiters.wait(10_000, () => new Error('late'));
    state = 'disconnected';
    vi.advanceTimersByTime(100);
    await expect(short).rejects.toThrow('not live (disconnected)');
    expect(waiters.size).toBe(1);
    waiters.resolveAll('live');
    await expect(long).resolves.toBe('live');
  });

  it('rejects every waiter when waiting ends for all', async () => {
    const waiters = new Waiters<string>();
    const one = waiters.wait(1_000, () => new Error('late'));
    waiters.rejectAll(new Error('closed'));
    await expect(one).rejects.toThrow('closed');
    expect(waiters.size).toBe(0);
  });
});
