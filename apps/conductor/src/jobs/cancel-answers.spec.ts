import { describe, expect, it } from 'vitest';
import { cancelAnswerSchema } from '@app/contracts';
import {
  type CancelActs,
  type CancelFinding,
  type CancelStep,
  cancelAnswer,
  cancelAnswerBody,
  jobSplitsOfRequest,
} from './cancel-answers';

const C = 'conductor-1';
const RECORDED_TAIL =
  'whichever conductor takes it next (queued, waiting for a retry, or running elsewhere, within a second) answers it CANCELLED; ' +
  'if no such request exists or it was already answered, nothing else happens';

const job = (status?: {
  state: 'running' | 'done';
  nodesDone: number;
  nodesTotal: number;
}): CancelFinding => ({
  target: 'job',
  jobId: 'job-1',
  ...(status ? { status } : {}),
});
const request = (
  found: Omit<Extract<CancelFinding, { target: 'request' }>, 'target' | 'requestId'> = {},
): CancelFinding => ({
  target: 'request',
  requestId: 'job-1.node-a',
  ...found,
});
const ofJob = { job: { jobId: 'job-1', node: 'node-a' } };

/** Each state of a job or request a cancel can find, what it did (if it was asked to act), and the answer. */
const TABLE: Array<[string, CancelFinding, CancelActs | undefined, CancelStep]> = [
  ['unknown job', job(), undefined, { answer: { status: 'not-found', detail: 'no job job-1 in this cell' } }],
  [
    'finished job',
    job({ state: 'done', nodesDone: 3, nodesTotal: 3 }),
    undefined,
    { answer: { status: 'already-final', detail: 'job job-1 had finished: 3 nodes' } },
  ],
  [
    'running job: act first',
    job({ state: 'running', nodesDone: 1, nodesTotal: 3 }),
    undefined,
    { cancel: 'job' },
  ],
  [
    'running job, two copies aborted here',
    job({ state: 'running', nodesDone: 1, nodesTotal: 3 }),
    { aborted: 2 },
    {
      answer: {
        status: 'cancelled',
        detail:
          'job job-1 cancelled with 2 of 3 nodes not done: their queued copies are answered CANCELLED when taken, running ones are aborted (2 on conductor-1)',
      },
    },
  ],
  [
    // Cancelling twice: the marker is written once, the answer is the same (a job's cancel is idempotent).
    'running job cancelled before, nothing running here',
    job({ state: 'running', nodesDone: 0, nodesTotal: 2 }),
    { aborted: 0 },
    {
      answer: {
        status: 'cancelled',
        detail:
          'job job-1 cancelled with 2 of 2 nodes not done: their queued copies are answered CANCELLED when taken, running ones are aborted (0 on conductor-1)',
      },
    },
  ],
  [
    "a job's request whose node finished",
    request({ ...ofJob, finished: { outcome: 'completed' } }),
    undefined,
    {
      answer: {
        status: 'already-final',
        detail: 'request job-1.node-a (job job-1, node node-a) had finished: completed',
      },
    },
  ],
  ["a job's request whose node has no outcome: act first", request(ofJob), undefined, { cancel: 'request' }],
  [
    'a plain request answered with a reason',
    request({ answered: { status: 'failed', reason: 'SOURCE_MISSING', at: '2026-01-01T00:00:00.000Z' } }),
    undefined,
    {
      answer: {
        status: 'already-final',
        detail:
          'request job-1.node-a was answered failed SOURCE_MISSING at 2026-01-01T00:00:00.000Z: that answer stands, also for a re-send; nothing was cancelled',
      },
    },
  ],
  [
    'a plain request answered completed',
    request({ answered: { status: 'completed', at: '2026-01-01T00:00:00.000Z' } }),
    undefined,
    {
      answer: {
        status: 'already-final',
        detail:
          'request job-1.node-a was answered completed at 2026-01-01T00:00:00.000Z: that answer stands, also for a re-send; nothing was cancelled',
      },
    },
  ],
  ['a request not answered: act first', request(), undefined, { cancel: 'request' }],
  [
    'a request running here',
    request(),
    { aborted: 1, fresh: true },
    {
      answer: {
        status: 'cancelled',
        detail: 'request job-1.node-a was running on conductor-1: aborted, answered CANCELLED',
      },
    },
  ],
  [
    'a request cancelled before and still running here',
    request(ofJob),
    { aborted: 1, fresh: false },
    {
      answer: {
        status: 'cancelled',
        detail: 'request job-1.node-a was running on conductor-1: aborted, answered CANCELLED',
      },
    },
  ],
  [
    'a request not running here',
    request(),
    { aborted: 0, fresh: true },
    {
      answer: {
        status: 'recorded',
        detail: `request job-1.node-a is not running on conductor-1: ${RECORDED_TAIL}`,
      },
    },
  ],
  [
    'a request not running here, cancelled before',
    request(ofJob),
    { aborted: 0, fresh: false },
    {
      answer: {
        status: 'recorded',
        detail: `request job-1.node-a is not running on conductor-1 (cancelled before): ${RECORDED_TAIL}`,
      },
    },
  ],
];

describe('cancelAnswer', () => {
  it.each(TABLE)('%s', (_name, finding, acts, expected) => {
    expect(acts ? cancelAnswer(finding, C, acts) : cancelAnswer(finding, C)).toEqual(expected);
  });

  it('a job or request that is over keeps its answer, whatever the cancel did', () => {
    for (const [, finding, acts, expected] of TABLE)
      if (!acts && 'answer' in expected)
        expect(cancelAnswer(finding, C, { aborted: 3, fresh: true })).toEqual(expected);
  });
});

describe('cancelAnswerBody', () => {
  it('names the request or the job the cancel named, and is a valid cancel answer', () => {
    const reply = { status: 'not-found' as const, detail: 'no job job-1 in this cell' };
    const at = '2026-01-01T00:00:00.000Z';
    const ofJob = cancelAnswerBody({ v: 1, type: 'cancel', jobId: 'job-1' }, reply, C, at);
    expect(ofJob).toEqual({ v: 1, type: 'cancel-answer', jobId: 'job-1', ...reply, conductorId: C, at });
    const ofRequest = cancelAnswerBody({ v: 1, type: 'cancel', requestId: 'r-1' }, reply, C, at);
    expect(ofRequest).toEqual({
      v: 1,
      type: 'cancel-answer',
      requestId: 'r-1',
      ...reply,
      conductorId: C,
      at,
    });
    expect(cancelAnswerSchema.safeParse(ofJob).success).toBe(true);
    expect(cancelAnswerSchema.safeParse(ofRequest).success).toBe(true);
  });
});

describe('jobSplitsOfRequest', () => {
  it('jobSplitsOfRequest reads <jobId>.<node> every way the dots allow, the longest job id first', () => {
    expect(jobSplitsOfRequest('job-1.node-a')).toEqual([{ jobId: 'job-1', node: 'node-a' }]);
    expect(jobSplitsOfRequest('plain-request')).toEqual([]);
    expect(jobSplitsOfRequest('a.b.c')).toEqual([
      { jobId: 'a.b', node: 'c' },
      { jobId: 'a', node: 'b.c' },
    ]);
  });
});
