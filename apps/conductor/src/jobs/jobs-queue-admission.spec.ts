import { describe, expect, it } from 'vitest';
import { ReasonError, jobRefusalSchema } from '@app/contracts';
import {
  type Admission,
  acceptanceRefusal,
  admitJobsQueueMessage,
  jobRefusal,
  peekJobId,
  refusalOf,
} from './jobs-queue-admission';

const body = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
const PRECACHE = { v: 1, type: 'precache', jobId: 'job-1', imageId: 'img.raw', nodes: ['node-a'] };

/** A message of the jobs queue (body, reply_to) and whether it is admitted, or refused and why. */
const TABLE: Array<[string, Buffer, string | undefined, Admission]> = [
  ['a pre-cache job', body(PRECACHE), undefined, { admitted: PRECACHE as never }],
  [
    'a purge job with a reply queue of its own',
    body({ v: 1, type: 'purge', jobId: 'job-2', imageId: 'img.raw', all: true }),
    'amq.gen-abc',
    { admitted: { v: 1, type: 'purge', jobId: 'job-2', imageId: 'img.raw', all: true } },
  ],
  [
    'a cancel',
    body({ v: 1, type: 'cancel', requestId: 'r-1' }),
    undefined,
    { admitted: { v: 1, type: 'cancel', requestId: 'r-1' } },
  ],
  [
    "reply_to in the cells' own namespace: refused, its job id read",
    body(PRECACHE),
    'icc.cell-1.requests',
    {
      refused: {
        reason: 'INVALID_REQUEST',
        detail:
          'reply_to: names "icc.cell-1.requests", in the "icc." namespace of the cells\' own queues; use a queue of your own (e.g. an exclusive, server-named one)',
        jobId: 'job-1',
      },
    },
  ],
  [
    'not JSON',
    body('{"jobId": "job-3", '),
    undefined,
    {
      refused: {
        reason: 'INVALID_REQUEST',
        detail: expect.stringMatching(/^body: not valid JSON/),
        jobId: 'job-3',
      },
    },
  ],
  [
    'another version',
    body({ ...PRECACHE, v: 2 }),
    undefined,
    {
      refused: {
        reason: 'UNSUPPORTED_VERSION',
        detail: 'v: unsupported version 2; this conductor speaks version 1',
        jobId: 'job-1',
      },
    },
  ],
  [
    'an unknown type',
    body({ v: 1, type: 'resize', jobId: 'job-1' }),
    undefined,
    {
      refused: {
        reason: 'INVALID_REQUEST',
        detail: 'type: must be "precache" or "purge" or "cancel"',
        jobId: 'job-1',
      },
    },
  ],
  [
    'an invalid job: no job id to name',
    body({ ...PRECACHE, jobId: 'bad id', nodes: [] }),
    undefined,
    {
      refused: {
        reason: 'INVALID_REQUEST',
        detail: expect.stringContaining('nodes: must list at least one node'),
      },
    },
  ],
];

describe('admitJobsQueueMessage', () => {
  it.each(TABLE)('%s', (_name, content, replyTo, expected) => {
    expect(admitJobsQueueMessage(content, replyTo)).toEqual(expected);
  });
});

describe('acceptanceRefusal', () => {
  it.each<[string, unknown, ReturnType<typeof acceptanceRefusal>]>([
    [
      'a final reason: refused under the job id',
      new ReasonError('INVALID_REQUEST', 'jobId: job-1 is already the purge job of image img.raw'),
      {
        reason: 'INVALID_REQUEST',
        detail: 'jobId: job-1 is already the purge job of image img.raw',
        jobId: 'job-1',
      },
    ],
    ['a retryable reason: handed back', new ReasonError('IO_ERROR', 'EIO'), undefined],
    ['the cell folder gone: handed back', new ReasonError('CACHE_UNAVAILABLE', 'gone'), undefined],
    ['anything else: handed back', new Error('boom'), undefined],
  ])('%s', (_name, error, expected) => {
    expect(acceptanceRefusal(error, 'job-1')).toEqual(expected);
  });
});

describe('refusals', () => {
  it('anything thrown is INVALID_REQUEST, its detail at most 4096 characters', () => {
    expect(refusalOf(new Error('x'.repeat(5000)), undefined)).toEqual({
      reason: 'INVALID_REQUEST',
      detail: 'x'.repeat(4096),
    });
  });

  it('the job-refused answer names the job when its id is known, and is valid', () => {
    const at = '2026-01-01T00:00:00.000Z';
    const named = jobRefusal({ reason: 'INVALID_REQUEST', detail: 'd', jobId: 'job-1' }, 'c-1', at);
    expect(named).toEqual({
      v: 1,
      type: 'job-refused',
      jobId: 'job-1',
      reason: 'INVALID_REQUEST',
      detail: 'd',
      conductorId: 'c-1',
      at,
    });
    expect(jobRefusalSchema.safeParse(named).success).toBe(true);
    expect(jobRefusal({ reason: 'INVALID_REQUEST', detail: 'd' }, 'c-1', at)).not.toHaveProperty('jobId');
  });

  it('peekJobId reads a valid job id only', () => {
    expect(peekJobId(body('{"jobId" : "job-9", broken'))).toBe('job-9');
    expect(peekJobId(body({ jobId: 'has space' }))).toBeUndefined();
    expect(peekJobId(body({ jobId: 'j'.repeat(65) }))).toBeUndefined();
    expect(peekJobId(body({ requestId: 'r-1' }))).toBeUndefined();
  });
});
