import { describe, expect, it } from 'vitest';
import { ReasonError } from './reason-error';
import { copyResultSchema, isFinalResult, parseCopyResult } from './copy-result';
import { parseProgressEvent } from './progress-event';

const base = {
  v: 1,
  type: 'result',
  requestId: 'req-1',
  imageId: 'img',
  source: 'node-a',
  destination: 'node-b',
  attempt: 1,
  durations: { totalMs: 12.5, lockWaitMs: 1, copyMs: 10, verifyMs: 1.5 },
  conductorId: 'conductor-1',
  at: '2025-06-01T12:00:00.000Z',
} as const;

describe('copy result', () => {
  it('accepts completed and failed results, and ignores unknown fields', () => {
    expect(
      parseCopyResult(JSON.stringify({ ...base, status: 'completed', bytes: 10, sha256: 'b'.repeat(64) }))
        .status,
    ).toBe('completed');
    const failed = parseCopyResult({
      ...base,
      status: 'failed',
      reason: 'LOCK_TIMEOUT',
      retryable: true,
      later: 1,
    });
    expect(failed.reason).toBe('LOCK_TIMEOUT');
    expect(isFinalResult(failed)).toBe(false);
    expect(isFinalResult({ status: 'failed', retryable: false })).toBe(true);
    expect(isFinalResult({ status: 'already-present' })).toBe(true);
  });

  it('ties reason and retryable to status failed', () => {
    expect(copyResultSchema.safeParse({ ...base, status: 'failed', retryable: false }).success).toBe(false);
    expect(() => parseCopyResult({ ...base, status: 'completed', reason: 'INTERNAL' })).toThrow(
      'reason: must be present exactly when status is failed',
    );
  });

  it('rejects an unknown reason code and a zero attempt, naming the fields', () => {
    expect(() =>
      parseCopyResult({ ...base, status: 'failed', reason: 'NOPE', retryable: false, attempt: 0 }),
    ).toThrow(/reason: must be "INVALID_REQUEST" or .*; attempt:/);
  });

  it('refuses other versions', () => {
    try {
      parseCopyResult({ ...base, v: 2, status: 'completed' });
      expect.unreachable();
    } catch (error) {
      expect((error as ReasonError).code).toBe('UNSUPPORTED_VERSION');
    }
  });
});

describe('progress event', () => {
  it('parses and validates the phase', () => {
    const event = {
      v: 1,
      type: 'progress',
      requestId: 'req-1',
      imageId: 'img',
      source: 'node-a',
      destination: 'node-b',
      phase: 'copying',
      bytesDone: 5,
      bytesTotal: 10,
      conductorId: 'c-1',
      at: '2025-06-01T12:00:00Z',
    };
    expect(parseProgressEvent(Buffer.from(JSON.stringify(event)))).toEqual(event);
    expect(() => parseProgressEvent({ ...event, phase: 'dreaming' })).toThrow(
      /^phase: must be "waiting-for-lock" or/,
    );
  });
});
