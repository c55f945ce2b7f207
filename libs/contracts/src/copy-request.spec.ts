import { describe, expect, it } from 'vitest';
import { ReasonError } from './reason-error';
import {
  assertDeadlineNotPassed,
  MAX_REQUEST_BYTES,
  MessageValidationError,
  parseCopyRequest,
  peekReplyInfo,
} from './copy-request';
import type { ReasonCode } from './reason-codes';

const SHA = 'a'.repeat(64);
const valid = { v: 1, requestId: 'req-1', imageId: 'ubuntu-24.04.qcow2', destination: 'node-b' };

function failure(body: unknown): ReasonError {
  try {
    parseCopyRequest(body);
  } catch (error) {
    expect(error).toBeInstanceOf(ReasonError);
    return error as ReasonError;
  }
  throw new Error(`expected ${JSON.stringify(body)?.slice(0, 80)} to be rejected`);
}

function expectRejected(body: unknown, code: ReasonCode, message: string | RegExp): void {
  const error = failure(body);
  expect(error.code).toBe(code);
  expect(error.retryable).toBe(false);
  if (typeof message === 'string') expect(error.message).toContain(message);
  else expect(error.message).toMatch(message);
}

describe('parseCopyRequest', () => {
  it('parses a minimal request from a Buffer, a string or an object', () => {
    expect(parseCopyRequest(Buffer.from(JSON.stringify(valid)))).toEqual(valid);
    expect(parseCopyRequest(JSON.stringify(valid))).toEqual(valid);
    expect(parseCopyRequest(valid)).toEqual(valid);
  });

  it('parses every optional field', () => {
    const full = {
      ...valid,
      source: 'node-a',
      sha256: SHA,
      size: 0,
      deadline: '2030-01-01T00:00:00.000+02:00',
      priority: 'background',
    };
    expect(parseCopyRequest(JSON.stringify(full))).toEqual(full);
    expect(parseCopyRequest({ ...valid, priority: 'interactive' }).priority).toBe('interactive');
    expect(parseCopyRequest({ ...valid, size: Number.MAX_SAFE_INTEGER }).size).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.each([
    ['not JSON', '{"v":1,', 'body: not valid JSON'],
    ['empty body', '', 'body: not valid JSON'],
    ['an array', '[]', 'body: must be a JSON object (got an array)'],
    ['null', 'null', 'body: must be a JSON object (got null)'],
    ['a string', '"x"', 'body: must be a JSON object (got a string)'],
    ['a number', '42', 'body: must be a JSON object (got a number)'],
    ['an already-parsed array', [], 'body: must be a JSON object (got an array)'],
    ['undefined', undefined, 'body: must be a JSON object (got a undefined)'],
  ])('rejects %s as INVALID_REQUEST naming the body', (_label, body, message) => {
    expectRejected(body, 'INVALID_REQUEST', message);
  });

  it('rejects a body over MAX_REQUEST_BYTES before parsing it', () => {
    const huge = JSON.stringify({ ...valid, padding: 'x'.repeat(MAX_REQUEST_BYTES) });
    expectRejected(huge, 'INVALID_REQUEST', `body: must be at most ${MAX_REQUEST_BYTES} bytes`);
    expectRejected(Buffer.from(huge), 'INVALID_REQUEST', `body: must be at most ${MAX_REQUEST_BYTES} bytes`);
    // Multi-byte characters count as bytes, not characters.
    expectRejected(
      '"' + 'é'.repeat(MAX_REQUEST_BYTES / 2 + 1) + '"',
      'INVALID_REQUEST',
      'body: must be at most',
    );
  });

  it.each([
    [2, 'v: unsupported version 2'],
    ['1', 'v: unsupported version "1"'],
    [null, 'v: unsupported version null'],
  ])('rejects v=%j as UNSUPPORTED_VERSION', (v, message) => {
    expectRejected({ ...valid, v }, 'UNSUPPORTED_VERSION', message);
  });

  it('requires v', () => {
    const { v: _v, ...rest } = valid;
    expectRejected(rest, 'INVALID_REQUEST', 'v: is required');
  });

  it.each([
    [{ requestId: undefined }, 'requestId: is required'],
    [{ requestId: 42 }, 'requestId: must be a string (got a number)'],
    [{ requestId: '' }, 'requestId: must not be empty'],
    [{ requestId: 'r'.repeat(129) }, 'requestId: must be at most 128 characters'],
    [{ requestId: 'a b' }, 'requestId: must start with a letter or digit'],
    [{ imageId: ['x'] }, 'imageId: must be a string (got an array)'],
    [{ imageId: 'x.meta.json' }, "imageId: must not end with '.meta.json'"],
    [{ imageId: '../../etc/passwd' }, 'imageId: must start with a letter or digit'],
    [{ imageId: 'a/b' }, 'imageId: must start with a letter or digit'],
    [{ destination: 'node..b' }, "destination: must not contain '..'"],
    [{ destination: '..' }, "destination: must not contain '..'"],
    [{ destination: 'n'.repeat(65) }, 'destination: must be at most 64 characters'],
    [{ source: 'node-b' }, 'source: must differ from destination'],
    [{ source: 'x/..' }, "source: must not contain '..'"],
    [{ sha256: 'A'.repeat(64) }, 'sha256: must be 64 lowercase hexadecimal characters'],
    [{ sha256: 'a'.repeat(63) }, 'sha256: must be 64 lowercase hexadecimal characters'],
    [{ size: -1 }, 'size: must not be negative'],
    [{ size: 1.5 }, 'size: must be a whole number (got a number)'],
    [{ size: '10' }, 'size: must be a number (got a string)'],
    [{ size: 2 ** 60 }, 'size: must be a safe integer'],
    [{ deadline: 'tomorrow' }, 'deadline: must be an ISO-8601 timestamp with a time zone'],
    [{ deadline: '2030-01-01T00:00:00' }, 'deadline: must be an ISO-8601 timestamp with a time zone'],
    [{ priority: 5 }, 'priority: must be "interactive" or "background"'],
    [{ priority: 'urgent' }, 'priority: must be "interactive" or "background"'],
    [{ weight: 5 }, 'weight: unknown field'],
    [{ extra: true }, 'extra: unknown field'],
  ])('rejects %j as INVALID_REQUEST naming the field', (patch, message) => {
    const error = failure({ ...valid, ...patch });
    expect(error.code).toBe('INVALID_REQUEST');
    expect(error).toBeInstanceOf(MessageValidationError);
    expect(error.message).toContain(message);
  });

  it('lists every invalid field, with the first one as `field`', () => {
    const error = failure({
      ...valid,
      destination: 'a..b',
      sha256: 'nope',
      extra: 1,
    }) as MessageValidationError;
    expect(error.field).toBe('destination');
    expect(error.issues.map((i) => i.field)).toEqual(['destination', 'sha256', 'extra']);
    expect(error.message).toBe(
      "destination: must not contain '..'; sha256: must be 64 lowercase hexadecimal characters; extra: unknown field",
    );
  });
});

describe('assertDeadlineNotPassed', () => {
  const now = new Date('2025-06-01T12:00:00Z');
  it('accepts no deadline or a future one', () => {
    expect(() => assertDeadlineNotPassed({}, now)).not.toThrow();
    expect(() => assertDeadlineNotPassed({ deadline: '2025-06-01T14:00:01+02:00' }, now)).not.toThrow();
  });
  it('throws DEADLINE_EXCEEDED for a past one, honouring the zone', () => {
    try {
      assertDeadlineNotPassed({ deadline: '2025-06-01T13:59:59+02:00' }, now);
      expect.unreachable();
    } catch (error) {
      expect((error as ReasonError).code).toBe('DEADLINE_EXCEEDED');
      expect((error as ReasonError).message).toContain('deadline:');
    }
  });
});

describe('peekReplyInfo', () => {
  it('takes the valid ids of a request that fails validation', () => {
    expect(
      peekReplyInfo(JSON.stringify({ v: 7, requestId: 'r-1', imageId: 'img', destination: '../x' })),
    ).toEqual({
      requestId: 'r-1',
      imageId: 'img',
    });
  });
  it('scans malformed or oversized JSON text', () => {
    expect(peekReplyInfo('{"requestId": "r-2", "imageId": "img", ')).toEqual({
      requestId: 'r-2',
      imageId: 'img',
    });
    const huge = Buffer.from(`{"requestId":"r-3","pad":"${'x'.repeat(MAX_REQUEST_BYTES)}"}`);
    expect(peekReplyInfo(huge).requestId).toBe('r-3');
  });
  it('never returns an unsafe id, and falls back to the message id', () => {
    expect(peekReplyInfo('{"requestId":"../etc"}')).toEqual({});
    expect(peekReplyInfo('[]', 'msg-9')).toEqual({ requestId: 'msg-9' });
    expect(peekReplyInfo(null, '../x')).toEqual({});
    expect(peekReplyInfo(Buffer.from([0xff, 0xfe]), undefined)).toEqual({});
  });
});
