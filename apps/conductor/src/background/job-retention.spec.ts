import { afterEach, describe, expect, it, vi } from 'vitest';
import { JobRetention } from './job-retention';
import type { LeaseTick, RoundLease } from './round-lease';

describe('JobRetention', () => {
  afterEach(() => vi.useRealTimers());
  const log = { info: vi.fn(), warn: vi.fn() };

  it('removes what is older than JOB_KEEP_MS each round, and logs what it removed', async () => {
    vi.useFakeTimers();
    const removeFinished = vi.fn(async () => ({ jobs: 2, cancels: 1 }));
    const removeOlderThan = vi.fn(async () => 3);
    const retention = new JobRetention(
      { removeFinished },
      { keepMs: 7 * 86_400_000, log, intervalMs: 1000, answers: { removeOlderThan } },
    );
    retention.start();
    await vi.advanceTimersByTimeAsync(2500);
    expect(removeFinished).toHaveBeenCalledTimes(2);
    expect(removeFinished).toHaveBeenCalledWith(7 * 86_400_000);
    expect(removeOlderThan).toHaveBeenCalledWith(7 * 86_400_000);
    expect(log.info).toHaveBeenCalledWith(
      expect.objectContaining({ jobs: 2, cancels: 1, answers: 3 }),
      'old job records removed',
    );
    expect(retention.view()).toMatchObject({
      enabled: true,
      rounds: 2,
      lastRound: { jobs: 2, cancels: 1, answers: 3, fsOps: 2 },
    });
    await retention.stop();
  });

  it('with JOB_KEEP_MS=0 keeps everything: no round runs', async () => {
    vi.useFakeTimers();
    const removeFinished = vi.fn(async () => ({ jobs: 0, cancels: 0 }));
    const retention = new JobRetention({ removeFinished }, { keepMs: 0, log, intervalMs: 1000 });
    retention.start();
    await vi.advanceTimersByTimeAsync(5000);
    expect(removeFinished).not.toHaveBeenCalled();
    await retention.stop();
  });

  it('a failing round is logged and the next one still runs', async () => {
    vi.useFakeTimers();
    const removeFinished = vi
      .fn<() => Promise<{ jobs: number; cancels: number }>>()
      .mockRejectedValueOnce(new Error('EIO'))
      .mockResolvedValue({ jobs: 0, cancels: 0 });
    const retention = new JobRetention({ removeFinished }, { keepMs: 86_400_000, log, intervalMs: 1000 });
    retention.start();
    await vi.advanceTimersByTimeAsync(2500);
    expect(log.warn).toHaveBeenCalledWith({ err: 'EIO' }, 'job retention: a round failed');
    expect(removeFinished).toHaveBeenCalledTimes(2);
    await retention.stop();
  });

  it("with a cell-wide lease a timer tick runs the round only when the lease says it is this conductor's", async () => {
    vi.useFakeTimers();
    const removeFinished = vi.fn(async () => ({ jobs: 0, cancels: 0 }));
    let verdict: LeaseTick = 'recent';
    const lease = {
      name: 'job-retention',
      tick: vi.fn(async (round: () => Promise<unknown>) => {
        if (verdict === 'ran') await round();
        return verdict;
      }),
    } as unknown as RoundLease;
    const retention = new JobRetention(
      { removeFinished },
      { keepMs: 86_400_000, log, intervalMs: 1000, lease },
    );
    retention.start();
    await vi.advanceTimersByTimeAsync(2500);
    expect(lease.tick).toHaveBeenCalled();
    expect(removeFinished).not.toHaveBeenCalled(); // another conductor ran it within the interval
    verdict = 'ran';
    await vi.advanceTimersByTimeAsync(1000);
    expect(removeFinished).toHaveBeenCalledTimes(1);
    await retention.stop();
  });
});
