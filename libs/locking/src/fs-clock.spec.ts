import { describe, expect, it } from 'vitest';
import { CLOCK_TICK_BOUND_US, FsClockReading, clockRestMs, clockVerdict } from './fs-clock';

const F = 1_796_579_605_000_000; // a floor in µs, on a whole second

describe('the file system clock rule', () => {
  it('lets a generation be made once a stamp is past it, and waits while the stamp is within a tick', () => {
    expect(clockVerdict(F, F + 1)).toBe('past');
    expect(clockVerdict(F, F), 'the epoch tick itself').toBe('wait');
    expect(clockVerdict(F + 3, F), 'a few claims into a young life').toBe('wait');
    expect(clockVerdict(F, F - CLOCK_TICK_BOUND_US + 1)).toBe('wait');
  });

  it('does not wait for a floor more than a tick ahead of the clock (a clock ahead, a touch): as before the rule', () => {
    expect(clockVerdict(F, F - CLOCK_TICK_BOUND_US)).toBe('not-a-tick');
    expect(clockVerdict(F + 3_600_000_000, F)).toBe('not-a-tick');
  });

  it('keeps the newest stamp it saw', () => {
    const clock = new FsClockReading();
    expect(clock.isPast(0)).toBe(false);
    clock.saw(BigInt(F + 5) * 1000n + 999n);
    clock.saw(BigInt(F) * 1000n);
    expect(clock.isPast(F + 4)).toBe(true);
    expect(clock.isPast(F + 5)).toBe(false);
  });

  it('rests 1 ms, doubling, up to the pacing of the wait', () => {
    expect([0, 1, 2, 3, 7, 8, 60].map((tries) => clockRestMs(tries, 100))).toEqual([
      1, 2, 4, 8, 100, 100, 100,
    ]);
  });
});
