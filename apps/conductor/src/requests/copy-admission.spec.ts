import { describe, expect, it, vi } from 'vitest';
import { HEADER_ATTEMPT, HEADER_FIRST_SEEN, HEADER_SIGNATURE } from '@app/contracts';
import type { JobRecord } from '@app/image-store';
import { RetryHeaderSigner } from '@app/messaging';
import { consumeMessage } from '../../../../test/support/amqp-fakes';
import { type AdmissionDeps, admitCopyRequest } from './copy-admission';

const signer = new RetryHeaderSigner(Buffer.alloc(32, 7), 'spec-cell');
const NOW = new Date('2026-03-01T12:00:00.000Z');
const FIRST_SEEN = '2026-03-01T11:00:00.000Z';
const REQUEST = { v: 1, requestId: 'req-1', imageId: 'img-1', destination: 'node-b' };
const JOB_COPY = { ...REQUEST, requestId: 'job-1.node-b', jobId: 'job-1' };
const PRECACHE = { type: 'precache', nodes: ['node-a', 'node-b'] } as unknown as JobRecord;

function delivery(body: object | Buffer = REQUEST, properties: Parameters<typeof consumeMessage>[1] = {}) {
  const message = consumeMessage(body, {
    messageId: 'req-1',
    replyTo: 'amq.gen-reply',
    contentType: 'application/json',
    ...properties,
  });
  return { message, properties: message.properties, content: message.content };
}

function signed(attempt: number, body: object = REQUEST) {
  const unsigned = delivery(body).message;
  const signature = signer.sign(unsigned, attempt, FIRST_SEEN);
  return delivery(body, {
    headers: { [HEADER_ATTEMPT]: attempt, [HEADER_FIRST_SEEN]: FIRST_SEEN, [HEADER_SIGNATURE]: signature },
  });
}

const jobsWith = (record: JobRecord | undefined) => ({ read: vi.fn(async () => record) });
const deps = (extra: Partial<AdmissionDeps> = {}): AdmissionDeps => ({ signer, maxAttempts: 3, ...extra });

describe('admitCopyRequest: retry headers', () => {
  it('a first delivery is attempt 1, first seen now', async () => {
    expect(await admitCopyRequest(delivery(), deps(), NOW)).toEqual({
      kind: 'admitted',
      request: REQUEST,
      attempt: 1,
      firstSeen: NOW.toISOString(),
      ignoredHeaders: [],
    });
  });

  it('a retry copy signed by this cell keeps its attempt and first-seen time', async () => {
    expect(await admitCopyRequest(signed(2), deps(), NOW)).toMatchObject({
      kind: 'admitted',
      attempt: 2,
      firstSeen: FIRST_SEEN,
      ignoredHeaders: [],
    });
  });

  it('headers nobody signed are ignored and named; the delivery is attempt 1', async () => {
    const forged = delivery(REQUEST, { headers: { [HEADER_ATTEMPT]: 3, [HEADER_FIRST_SEEN]: FIRST_SEEN } });
    expect(await admitCopyRequest(forged, deps(), NOW)).toMatchObject({
      kind: 'admitted',
      attempt: 1,
      firstSeen: NOW.toISOString(),
      ignoredHeaders: [HEADER_ATTEMPT, HEADER_FIRST_SEEN],
    });
  });

  it('a refusal keeps the retry standing too (a dead letter says which attempt it was)', async () => {
    const late = signed(3, { ...REQUEST, deadline: '2026-03-01T11:59:59.000Z' });
    expect(await admitCopyRequest(late, deps(), NOW)).toMatchObject({
      kind: 'refused',
      attempt: 3,
      firstSeen: FIRST_SEEN,
    });
  });
});

describe('admitCopyRequest: the message', () => {
  it.each([
    ['no content type', delivery(REQUEST, { contentType: undefined })],
    ['JSON with a charset', delivery(REQUEST, { contentType: 'Application/JSON; charset=utf-8' })],
    ['no reply_to', delivery(REQUEST, { replyTo: undefined })],
  ])('%s: admitted', async (_what, message) => {
    expect(await admitCopyRequest(message, deps(), NOW)).toMatchObject({ kind: 'admitted' });
  });

  it.each([
    ['a content type that is not JSON', delivery(REQUEST, { contentType: 'text/plain' }), 'content_type'],
    [
      'a reply_to among the cells own queues',
      delivery(REQUEST, { replyTo: 'icc.other.requests' }),
      'reply_to',
    ],
    ['a body that is not JSON', delivery(Buffer.from('{"v":1,"requestId":"req-9",')), 'body'],
    ['a body without a destination', delivery({ v: 1, requestId: 'req-1', imageId: 'img-1' }), 'destination'],
  ])('%s: refused INVALID_REQUEST, no request, answered at what can be read', async (_w, message, field) => {
    const admission = await admitCopyRequest(message, deps(), NOW);
    expect(admission).toMatchObject({
      kind: 'refused',
      failure: { code: 'INVALID_REQUEST' },
      request: undefined,
    });
    expect(admission.kind === 'refused' && admission.failure.detail).toContain(field);
    expect(admission.kind === 'refused' && admission.replyInfo.requestId).toMatch(/^req-[19]$/);
  });

  it('a body with no readable request id is answered under the message id', async () => {
    const admission = await admitCopyRequest(delivery(Buffer.from('not json')), deps(), NOW);
    expect(admission).toMatchObject({ kind: 'refused', replyInfo: { requestId: 'req-1' } });
  });

  it('the deadline is judged at the moment given: refused DEADLINE_EXCEEDED with the request, or admitted', async () => {
    const body = { ...REQUEST, deadline: '2026-03-01T12:00:00.000Z' };
    expect(await admitCopyRequest(delivery(body), deps(), NOW)).toMatchObject({
      kind: 'refused',
      failure: { code: 'DEADLINE_EXCEEDED' },
      request: body,
    });
    const before = new Date(NOW.getTime() - 1);
    expect(await admitCopyRequest(delivery(body), deps(), before)).toMatchObject({ kind: 'admitted' });
  });
});

describe("admitCopyRequest: a job's copy", () => {
  it('admitted when its id is <jobId>.<node> and its pre-cache job lists the node', async () => {
    const jobs = jobsWith(PRECACHE);
    expect(await admitCopyRequest(delivery(JOB_COPY), deps({ jobs }), NOW)).toMatchObject({
      kind: 'admitted',
      request: JOB_COPY,
    });
    expect(jobs.read).toHaveBeenCalledWith('job-1');
  });

  it('a plain request reads no job record', async () => {
    const jobs = jobsWith(undefined);
    await admitCopyRequest(delivery(), deps({ jobs }), NOW);
    expect(jobs.read).not.toHaveBeenCalled();
  });

  it.each([
    ['named otherwise', { ...JOB_COPY, requestId: 'job-1-node-b' }, PRECACHE, 'requestId'],
    ['of no such job', JOB_COPY, undefined, 'jobId'],
    ['of a purge', JOB_COPY, { ...PRECACHE, type: 'purge' } as unknown as JobRecord, 'jobId'],
    [
      'for a node its job does not list',
      { ...JOB_COPY, requestId: 'job-1.node-c', destination: 'node-c' },
      PRECACHE,
      'jobId',
    ],
  ])('a copy %s: refused INVALID_REQUEST, with the request', async (_what, body, record, field) => {
    const admission = await admitCopyRequest(delivery(body), deps({ jobs: jobsWith(record) }), NOW);
    expect(admission).toMatchObject({ kind: 'refused', failure: { code: 'INVALID_REQUEST' }, request: body });
    expect(admission.kind === 'refused' && admission.failure.detail).toMatch(new RegExp(`^${field}:`));
  });

  it('without the job records (a conductor with no jobs) every job copy is refused', async () => {
    expect(await admitCopyRequest(delivery(JOB_COPY), deps(), NOW)).toMatchObject({
      kind: 'refused',
      failure: { code: 'INVALID_REQUEST' },
    });
  });

  it('a job record that cannot be read refuses the copy as INTERNAL, with the request', async () => {
    const jobs = { read: vi.fn(async () => Promise.reject(new Error('EIO: read'))) };
    expect(await admitCopyRequest(delivery(JOB_COPY), deps({ jobs }), NOW)).toMatchObject({
      kind: 'refused',
      failure: { code: 'INTERNAL', detail: 'EIO: read' },
      request: JOB_COPY,
    });
  });
});
