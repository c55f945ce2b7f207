import { afterEach, describe, expect, it, vi } from 'vitest';
import { type JobView, RecentJobs } from './recent-jobs';

const job = (jobId: string): JobView => ({
  jobId,
  type: 'precache',
  imageId: 'img',
  state: 'done',
  cancelled: false,
  nodesDone: 1,
  nodesTotal: 1,
  failed: 0,
  bytesDone: 0,
  createdAt: '2030-01-01T00:00:00.000Z',
});

describe('RecentJobs', () => {
  afterEach(() => vi.useRealTimers());

  it('never holds /status up behind a hung read, and never starts a second read behind it', async () => {
    vi.useFakeTimers();
    let clock = 0;
    let hang = false;
    const read = vi.fn(async () => {
      if (hang) return new Promise<JobView[]>(() => {}); // a read into a dead mount: no answer, ever
      return [job(`j-${read.mock.calls.length}`)];
    });
    const jobs = new RecentJobs(read, { timeoutMs: 2_000, maxAgeMs: 1_000 }, () => clock);

    expect(await jobs.recent()).toEqual([job('j-1')]);
    clock += 500;
    expect(await jobs.recent()).toEqual([job('j-1')]); // fresh enough: not read again
    expect(read).toHaveBeenCalledTimes(1);

    hang = true;
    clock += 1_000;
    const first = jobs.recent();
    await vi.advanceTimersByTimeAsync(2_000);
    expect(await first).toEqual([job('j-1')]); // the last jobs read, after the timeout
    const second = jobs.recent();
    await vi.advanceTimersByTimeAsync(2_000);
    expect(await second).toEqual([job('j-1')]);
    expect(read).toHaveBeenCalledTimes(2); // the hung read is still the one in flight
  });
});
