import { describe, expect, it } from 'vitest';
import { type CopyRequest, type CopyResult, type ReasonCode, UNKNOWN_REQUEST_ID } from '@app/contracts';
import type { CopyJobResult } from '../copy/copy-job';
import type { Admitted, Refused } from './copy-admission';
import { type CopySettlement, type Handled, type SettleFacts, lookups, settle } from './copy-settlement';

const NOW = new Date('2026-03-01T12:00:10.000Z');
const FIRST_SEEN = '2026-03-01T12:00:00.000Z';
const PLAIN: CopyRequest = { v: 1, requestId: 'req-1', imageId: 'img-1', destination: 'node-b' };
const JOB_COPY: CopyRequest = { ...PLAIN, requestId: 'job-1.node-b', jobId: 'job-1' };
const COMPLETED: CopyJobResult = { status: 'completed', source: 'node-a', bytes: 42, sha256: 'f'.repeat(64) };
const PRESENT: CopyJobResult = { ...COMPLETED, status: 'already-present' };
const EARLIER: CopyResult = {
  v: 1,
  type: 'result',
  requestId: 'req-1',
  status: 'completed',
  attempt: 1,
  durations: { totalMs: 7 },
  conductorId: 'conductor-0',
  at: '2026-01-01T00:00:00.000Z',
};
const ALIVE = { available: true as const };
const DEAD = { available: false as const, problem: 'CACHE_ROOT/.icc-header-key is gone' };
const MAX = 3;

function admitted(request: CopyRequest = PLAIN, attempt = 1): Admitted {
  return { kind: 'admitted', request, attempt, firstSeen: FIRST_SEEN, ignoredHeaders: [] };
}

/** Refused at admission; `request` when the body parsed (the job check or the deadline refused it). */
function refused(code: ReasonCode, request?: CopyRequest, attempt = 1): Handled {
  const refusal: Refused = {
    kind: 'refused',
    failure: { code, detail: `${code} at admission` },
    request,
    replyInfo: { requestId: 'req-1', imageId: 'img-1' },
    attempt,
    firstSeen: FIRST_SEEN,
    ignoredHeaders: [],
  };
  return { kind: 'refused', refusal };
}

const copied = (result: CopyJobResult, coalesced = false, request = PLAIN, attempt = 1): Handled => ({
  kind: 'copied',
  result,
  coalesced,
  admitted: admitted(request, attempt),
});
const failed = (code: ReasonCode, attempt = 1, request = PLAIN): Handled => ({
  kind: 'failed',
  failure: { code, detail: `${code} in the copy` },
  admitted: admitted(request, attempt),
});
const answeredBefore: Handled = { kind: 'answered-before', earlier: EARLIER, admitted: admitted() };
const answeredBeforeAs = (reason: 'SOURCE_MISSING' | 'CANCELLED'): Handled => ({
  kind: 'answered-before',
  earlier: { ...EARLIER, status: 'failed', reason, detail: `it was ${reason}` },
  admitted: admitted(),
});

function facts(overrides: Partial<SettleFacts> = {}): SettleFacts {
  return {
    maxAttempts: MAX,
    shuttingDown: false,
    channelOpen: true,
    conductorId: 'conductor-1',
    now: NOW,
    handledMs: 5,
    ...overrides,
  };
}

/** One settlement in a line: its kind and what decides the table (not the answer's every field). */
function summary(s: CopySettlement): string {
  const parts: string[] = [s.kind];
  if (s.kind === 'retry') parts.push(s.counted ? 'counted' : 'uncounted');
  if (s.kind === 'retry' || s.kind === 'dead-letter') parts.push(s.failure.code);
  if (s.kind === 'completed') parts.push(s.result.status);
  if (s.kind === 'cancelled') parts.push(String(s.answer.reason));
  if ('answer' in s) parts.push(s.answer.retryable === true ? 'non-final' : 'final');
  if ('jobNode' in s && s.jobNode) parts.push(`node:${s.jobNode.outcome.outcome}`);
  if ('recordFirst' in s && s.recordFirst) parts.push('record-first');
  if (s.kind === 'dropped-with-channel') parts.push(`(${s.what})`);
  if (s.kind === 'answer-again') parts.push(s.earlier.status);
  if (s.kind === 'answer-again' && s.deadLetter) parts.push(`dead-letter-again ${s.deadLetter.code}`);
  return parts.join(' ');
}

type Row = [what: string, handled: Handled, facts: Partial<SettleFacts>, settlement: string];

/** Today's behaviour, row by row (each read off the handler as it was before the settlement was a value). */
// One row a line, so the table reads as one (prettier would spread each row over six lines).
// prettier-ignore
const TABLE: Row[] = [
  // Refused at admission: never copied, never recorded as a first answer or a node outcome.
  ['refused, not a request', refused('INVALID_REQUEST'), {}, 'dead-letter INVALID_REQUEST final'],
  ['refused, not a request, mount dead', refused('INVALID_REQUEST'), { cacheRoot: DEAD }, 'dead-letter INVALID_REQUEST final'],
  ['refused job copy (no such job), mount alive', refused('INVALID_REQUEST', JOB_COPY), { cacheRoot: ALIVE }, 'dead-letter INVALID_REQUEST final'],
  ['refused job copy (no such job), mount dead', refused('INVALID_REQUEST', JOB_COPY), { cacheRoot: DEAD }, 'retry uncounted CACHE_UNAVAILABLE non-final'],
  ['refused job copy, mount dead, attempts exhausted', refused('INVALID_REQUEST', JOB_COPY, MAX), { cacheRoot: DEAD }, 'retry uncounted CACHE_UNAVAILABLE non-final'],
    ['deadline passed', refused('DEADLINE_EXCEEDED', PLAIN), {}, 'dead-letter DEADLINE_EXCEEDED final'],
  ['deadline passed, mount dead', refused('DEADLINE_EXCEEDED', PLAIN), { cacheRoot: DEAD }, 'dead-letter DEADLINE_EXCEEDED final'],
  // Fixed: a job record that could not be read dead-lettered the copy at once, and its node never got an outcome.
  ['job record unreadable, mount dead', refused('INTERNAL', JOB_COPY), { cacheRoot: DEAD }, 'retry uncounted CACHE_UNAVAILABLE non-final'],
  ['job record unreadable, mount alive', refused('INTERNAL', JOB_COPY), { cacheRoot: ALIVE }, 'retry counted INTERNAL non-final'],
  ['job record unreadable, attempts exhausted', refused('INTERNAL', JOB_COPY, MAX), { cacheRoot: ALIVE }, 'dead-letter RETRIES_EXHAUSTED final node:failed'],
  ['refused, channel closed', refused('INVALID_REQUEST'), { channelOpen: false }, 'dropped-with-channel (refusal)'],
  ['refused job copy, channel closed, mount dead', refused('INVALID_REQUEST', JOB_COPY), { channelOpen: false, cacheRoot: DEAD }, 'dropped-with-channel (refusal)'],
  ['refused at shutdown', refused('INVALID_REQUEST'), { shuttingDown: true }, 'dead-letter INVALID_REQUEST final'],
  ['refused, attempts exhausted', refused('INVALID_REQUEST', undefined, MAX), {}, 'dead-letter INVALID_REQUEST final'],

  // A re-send of a request that has its first final answer: that answer, whatever else holds.
  ['answered before', answeredBefore, {}, 'answer-again completed'],
  ['answered before, channel closed', answeredBefore, { channelOpen: false }, 'answer-again completed'],
  ['answered before, at shutdown', answeredBefore, { shuttingDown: true }, 'answer-again completed'],
  // Fixed: its dead letter was lost when the first handling's answer could not be sent (the events exchange deleted).
  ['answered before as a failure', answeredBeforeAs('SOURCE_MISSING'), {}, 'answer-again failed dead-letter-again SOURCE_MISSING'],
  ['answered before as cancelled', answeredBeforeAs('CANCELLED'), {}, 'answer-again failed'],

  // Copied.
  ['completed', copied(COMPLETED), {}, 'completed completed final record-first'],
  ['already present, coalesced', copied(PRESENT, true), {}, 'completed already-present final record-first'],
  ['completed job copy', copied(COMPLETED, false, JOB_COPY), {}, 'completed completed final node:completed'],
  ['already present job copy', copied(PRESENT, false, JOB_COPY), {}, 'completed already-present final node:already-present'],
  ['completed on the last attempt', copied(COMPLETED, false, PLAIN, MAX), {}, 'completed completed final record-first'],
  ['completed at shutdown', copied(COMPLETED), { shuttingDown: true }, 'completed completed final record-first'],
  ['completed, mount dead', copied(COMPLETED), { cacheRoot: DEAD }, 'completed completed final record-first'],
  ['completed, channel closed', copied(COMPLETED), { channelOpen: false }, 'dropped-with-channel (result completed)'],
  ['already present, channel closed', copied(PRESENT, true, JOB_COPY), { channelOpen: false }, 'dropped-with-channel (result already-present)'],

  // Failed: permanent.
  ['permanent', failed('SOURCE_MISSING'), {}, 'dead-letter SOURCE_MISSING final record-first'],
  ['permanent, job copy', failed('SOURCE_MISSING', 1, JOB_COPY), {}, 'dead-letter SOURCE_MISSING final node:failed'],
  ['permanent, mount alive', failed('UNKNOWN_NODE'), { cacheRoot: ALIVE }, 'dead-letter UNKNOWN_NODE final record-first'],
  ['permanent, mount dead, attempts exhausted', failed('UNKNOWN_NODE', MAX), { cacheRoot: DEAD }, 'retry uncounted CACHE_UNAVAILABLE non-final'],
  ['deadline passed in the copy, mount dead', failed('DEADLINE_EXCEEDED'), { cacheRoot: DEAD }, 'dead-letter DEADLINE_EXCEEDED final record-first'],

  // Failed: retryable.
  ['retryable, attempts left', failed('LOCK_TIMEOUT'), {}, 'retry counted LOCK_TIMEOUT non-final'],
  ['retryable, second of three', failed('IO_ERROR', 2), {}, 'retry counted IO_ERROR non-final'],
  ['retryable, job copy', failed('LOCK_LOST', 1, JOB_COPY), {}, 'retry counted LOCK_LOST non-final'],
  ['retryable, attempts exhausted', failed('LOCK_TIMEOUT', MAX), {}, 'dead-letter RETRIES_EXHAUSTED final record-first'],
  ['retryable, attempts exhausted, job copy', failed('NO_SPACE', MAX, JOB_COPY), {}, 'dead-letter RETRIES_EXHAUSTED final node:failed'],
  ['unexpected error, attempts left', failed('INTERNAL'), {}, 'retry counted INTERNAL non-final'],
  ['unexpected error, attempts exhausted', failed('INTERNAL', MAX), {}, 'dead-letter RETRIES_EXHAUSTED final record-first'],
  ['retryable, mount dead', failed('IO_ERROR'), { cacheRoot: DEAD }, 'retry uncounted CACHE_UNAVAILABLE non-final'],
  ['retryable, mount dead, attempts exhausted', failed('IO_ERROR', MAX), { cacheRoot: DEAD }, 'retry uncounted CACHE_UNAVAILABLE non-final'],
  ['retryable, mount alive, attempts exhausted', failed('IO_ERROR', MAX), { cacheRoot: ALIVE }, 'dead-letter RETRIES_EXHAUSTED final record-first'],
  // A miss the copy could not prove (its folder was not the cell's when it looked), the mount back since.
  ['cache unavailable seen, mount alive, attempts exhausted', failed('CACHE_UNAVAILABLE', MAX), { cacheRoot: ALIVE }, 'retry uncounted CACHE_UNAVAILABLE non-final'],

  // Failed: the channel, the shutdown.
  ['retryable, channel closed', failed('LOCK_LOST'), { channelOpen: false }, 'dropped-with-channel (failure LOCK_LOST)'],
  ['permanent, channel closed, mount dead', failed('SOURCE_MISSING'), { channelOpen: false, cacheRoot: DEAD }, 'dropped-with-channel (failure SOURCE_MISSING)'],
  ['exhausted, channel closed', failed('LOCK_TIMEOUT', MAX), { channelOpen: false }, 'dropped-with-channel (failure LOCK_TIMEOUT)'],
  ['stopped by the shutdown', failed('SHUTTING_DOWN'), { shuttingDown: true }, 'hand-back'],
  ['permanent at shutdown', failed('SOURCE_MISSING'), { shuttingDown: true }, 'hand-back'],
  ['at shutdown, channel closed, mount dead', failed('LOCK_LOST', MAX), { shuttingDown: true, channelOpen: false, cacheRoot: DEAD }, 'hand-back'],

  // Cancelled: answered, never dead-lettered, whatever else holds.
  ['cancelled', failed('CANCELLED'), {}, 'cancelled CANCELLED final record-first'],
  ['cancelled job copy', failed('CANCELLED', 1, JOB_COPY), {}, 'cancelled CANCELLED final node:cancelled'],
  ['cancelled at shutdown', failed('CANCELLED'), { shuttingDown: true }, 'cancelled CANCELLED final record-first'],
  ['cancelled, channel closed', failed('CANCELLED'), { channelOpen: false }, 'cancelled CANCELLED final record-first'],
  ['cancelled, mount dead, attempts exhausted', failed('CANCELLED', MAX), { cacheRoot: DEAD }, 'cancelled CANCELLED final record-first'],
];

describe('settle: the settlement table of a copy request', () => {
  it.each(TABLE)('%s', (_what, handled, given, expected) => {
    expect(summary(settle(handled, facts(given)))).toBe(expected);
  });
});

describe('lookups: what is looked at before settling', () => {
  it.each<[string, Handled, boolean, { cacheRoot: boolean; channel: boolean }]>([
    ['a message that is no request', refused('INVALID_REQUEST'), false, { cacheRoot: false, channel: true }],
    [
      'a job copy refused as invalid',
      refused('INVALID_REQUEST', JOB_COPY),
      false,
      { cacheRoot: true, channel: true },
    ],
    [
      'a request past its deadline',
      refused('DEADLINE_EXCEEDED', PLAIN),
      false,
      { cacheRoot: false, channel: true },
    ],
    ['a re-send', answeredBefore, false, { cacheRoot: false, channel: false }],
    ['a copy done', copied(COMPLETED), false, { cacheRoot: false, channel: true }],
    ['a failed copy', failed('SOURCE_MISSING'), false, { cacheRoot: true, channel: true }],
    ['a copy past its deadline', failed('DEADLINE_EXCEEDED'), false, { cacheRoot: false, channel: true }],
    ['a failed copy at shutdown', failed('LOCK_LOST'), true, { cacheRoot: false, channel: false }],
    ['a cancelled copy', failed('CANCELLED'), false, { cacheRoot: false, channel: false }],
  ])('%s', (_what, handled, shuttingDown, looks) => {
    expect(lookups(handled, shuttingDown)).toEqual(looks);
  });
});

describe('settle: what a settlement carries', () => {
  it('a completed copy: the answer as of facts.now, its duration since first seen', () => {
    const s = settle(copied(COMPLETED, false, PLAIN, 2), facts());
    expect(s).toMatchObject({
      kind: 'completed',
      attempt: 2,
      elapsedMs: 10_000,
      answer: {
        requestId: 'req-1',
        imageId: 'img-1',
        source: 'node-a',
        destination: 'node-b',
        status: 'completed',
        bytes: 42,
        attempt: 2,
        durations: { totalMs: 10_000 },
        conductorId: 'conductor-1',
        at: NOW.toISOString(),
      },
    });
    expect(settle(copied(COMPLETED, false, PLAIN, 2), facts())).toEqual(s);
  });

  it("a job's copy records its node's outcome: bytes when copied, the reason and a bounded detail when not", () => {
    const done = settle(copied(COMPLETED, false, JOB_COPY), facts());
    const present = settle(copied(PRESENT, false, JOB_COPY), facts());
    const long: Handled = {
      kind: 'failed',
      failure: { code: 'SOURCE_MISSING', detail: 'x'.repeat(5000) },
      admitted: admitted(JOB_COPY),
    };
    const gone = settle(long, facts());
    const at = NOW.toISOString();
    expect('jobNode' in done && done.jobNode).toEqual({
      jobId: 'job-1',
      outcome: { node: 'node-b', outcome: 'completed', bytes: 42, conductorId: 'conductor-1', at },
    });
    expect('jobNode' in present && present.jobNode).toEqual({
      jobId: 'job-1',
      outcome: { node: 'node-b', outcome: 'already-present', conductorId: 'conductor-1', at },
    });
    expect('jobNode' in gone && gone.jobNode).toEqual({
      jobId: 'job-1',
      outcome: {
        node: 'node-b',
        outcome: 'failed',
        reason: 'SOURCE_MISSING',
        detail: 'x'.repeat(4096),
        conductorId: 'conductor-1',
        at,
      },
    });
  });

  it('a refusal is answered at what could be read of the message; its duration is the time it was held', () => {
    const s = settle(refused('INVALID_REQUEST'), facts({ handledMs: 3 }));
    expect(s).toMatchObject({
      kind: 'dead-letter',
      requestId: 'req-1',
      elapsedMs: 3,
      answer: { requestId: 'req-1', imageId: 'img-1', status: 'failed', retryable: false },
    });
    const anonymous: Handled = {
      kind: 'refused',
      refusal: { ...(refused('INVALID_REQUEST') as { refusal: Refused }).refusal, replyInfo: {} },
    };
    expect(settle(anonymous, facts())).toMatchObject({
      requestId: UNKNOWN_REQUEST_ID,
      answer: { requestId: UNKNOWN_REQUEST_ID },
    });
  });

  it('exhausted attempts name the last reason; a dead mount names its problem and what was seen there', () => {
    expect(settle(failed('LOCK_TIMEOUT', MAX), facts())).toMatchObject({
      failure: {
        code: 'RETRIES_EXHAUSTED',
        detail: 'after 3 attempts; last: LOCK_TIMEOUT: LOCK_TIMEOUT in the copy',
      },
      answer: { reason: 'RETRIES_EXHAUSTED' },
    });
    expect(settle(failed('SOURCE_MISSING'), facts({ cacheRoot: DEAD }))).toMatchObject({
      failure: {
        code: 'CACHE_UNAVAILABLE',
        detail: `${DEAD.problem}; seen there: SOURCE_MISSING: SOURCE_MISSING in the copy`,
      },
      answer: { reason: 'CACHE_UNAVAILABLE', retryable: true },
    });
  });

  it('an unexpected error is carried to where it is judged (retry or dead letter), not to a mount retry or a drop', () => {
    const unexpected = { err: 'a bug', stack: 'TypeError: a bug' };
    const bug = (attempt: number): Handled => ({
      kind: 'failed',
      failure: { code: 'INTERNAL', detail: 'a bug' },
      unexpected,
      admitted: admitted(PLAIN, attempt),
    });
    expect(settle(bug(1), facts())).toMatchObject({ kind: 'retry', unexpected });
    expect(settle(bug(MAX), facts())).toMatchObject({ kind: 'dead-letter', unexpected });
    expect(settle(bug(1), facts({ cacheRoot: DEAD }))).not.toHaveProperty('unexpected');
    expect(settle(bug(1), facts({ channelOpen: false }))).not.toHaveProperty('unexpected');
  });

  it('a finished copy dropped with its channel says what it did, for whoever counts copies from the log', () => {
    expect(settle(copied(PRESENT, true), facts({ channelOpen: false }))).toEqual({
      kind: 'dropped-with-channel',
      requestId: 'req-1',
      what: 'result already-present',
      done: { status: 'already-present', imageId: 'img-1', destination: 'node-b', coalesced: true },
    });
  });
});
