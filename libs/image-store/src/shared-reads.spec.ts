import { describe, expect, it } from 'vitest';
import { SharedReads } from './shared-reads';

describe('SharedReads', () => {
  it('answers a read of a key started less than maxAgeMs ago from it, and reads again after', async () => {
    let now = 1_000;
    let reads = 0;
    const shared = new SharedReads(250, () => now);
    const read = () => shared.read('a', async () => ++reads);
    expect(await Promise.all([read(), read()])).toEqual([1, 1]);
    now += 249;
    expect(await read()).toBe(1);
    now += 1;
    expect(await read()).toBe(2);
    expect(await shared.read('b', async () => 'other key')).toBe('other key');
    expect(reads).toBe(2);
  });

  it('shares a failure for the same time only, and forgets expired keys once many are kept', async () => {
    let now = 0;
    let attempts = 0;
    const shared = new SharedReads(250, () => now);
    const failing = () =>
      shared.read('k', async () => {
        attempts++;
        throw new Error(`attempt ${attempts}`);
      });
    await expect(failing()).rejects.toThrow('attempt 1');
    await expect(failing()).rejects.toThrow('attempt 1');
    now = 250;
    await expect(failing()).rejects.toThrow('attempt 2');
    for (let i = 0; i < 300; i++) await shared.read(`key-${i}`, async () => i);
    now = 600;
    let fresh = 0;
    await shared.read('key-0', async () => ++fresh);
    expect(fresh).toBe(1);
    expect((shared as unknown as { reads: Map<string, unknown> }).reads.size).toBeLessThanOrEqual(257);
  });
});
