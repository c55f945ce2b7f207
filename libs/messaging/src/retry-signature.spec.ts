import type { Message } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { RetryHeaderSigner } from './retry-signature';

const KEY = Buffer.alloc(32, 7);
const FIRST_SEEN = '2030-01-01T00:00:00.000Z';

function message(headers: Record<string, unknown>, body = '{"v":1,"requestId":"r-1"}', messageId = 'r-1') {
  return { content: Buffer.from(body), properties: { messageId, headers } } as unknown as Message;
}

/** A retry copy as a conductor of cell `c` writes it. */
function signed(signer: RetryHeaderSigner, attempt: number, m = message({})) {
  return message(
    {
      'x-icc-attempt': attempt,
      'x-icc-first-seen': FIRST_SEEN,
      'x-icc-signature': signer.sign(m, attempt, FIRST_SEEN),
    },
    m.content.toString(),
    m.properties.messageId as string,
  );
}

describe('RetryHeaderSigner', () => {
  const signer = new RetryHeaderSigner(KEY, 'c');

  it('believes the attempt and first-seen time of a retry copy it signed', () => {
    expect(signer.read(signed(signer, 3), 5)).toEqual({ attempt: 3, firstSeen: FIRST_SEEN, ignored: [] });
  });

  it('ignores forged headers: a first attempt, first seen now, the headers named', () => {
    const forged = message({
      'x-icc-attempt': 99,
      'x-icc-first-seen': '2000-01-01T00:00:00.000Z',
      custom: 'kept',
    });
    expect(signer.read(forged, 5)).toEqual({
      attempt: 1,
      firstSeen: undefined,
      ignored: ['x-icc-attempt', 'x-icc-first-seen'],
    });
    expect(signer.read(message({}), 5)).toEqual({ attempt: 1, firstSeen: undefined, ignored: [] });
  });

  it('believes a signed attempt 1 (a retry that did not count the attempt): its first-seen is kept', () => {
    const uncounted = signed(signer, 1);
    const firstSeen = (uncounted.properties.headers as Record<string, unknown>)['x-icc-first-seen'];
    expect(signer.read(uncounted, 5)).toEqual({ attempt: 1, firstSeen, ignored: [] });
  });

  it('refuses a genuine signature moved to another attempt, body, message id, cell or key', () => {
    const genuine = signed(signer, 2);
    const headers = genuine.properties.headers as Record<string, unknown>;
    const cases = [
      message({ ...headers, 'x-icc-attempt': 5 }),
      message({ ...headers, 'x-icc-first-seen': '2000-01-01T00:00:00.000Z' }),
      message(headers, '{"v":1,"requestId":"r-2"}'),
      message(headers, genuine.content.toString(), 'r-2'),
      message({ ...headers, 'x-icc-signature': '0'.repeat(64) }),
      message({ ...headers, 'x-icc-signature': 'not hex' }),
      message({ ...headers, 'x-icc-attempt': '2' }),
    ];
    for (const [i, m] of cases.entries()) expect(signer.read(m, 5).attempt, `case ${i}`).toBe(1);
    expect(new RetryHeaderSigner(KEY, 'other-cell').read(genuine, 5).attempt).toBe(1);
    expect(new RetryHeaderSigner(Buffer.alloc(32, 8), 'c').read(genuine, 5).attempt).toBe(1);
  });

  it('never lets a signed attempt exceed MAX_ATTEMPTS (lowered since it was written)', () => {
    expect(signer.read(signed(signer, 9), 5).attempt).toBe(5);
  });

  it('wants a key of at least 32 bytes', () => {
    expect(() => new RetryHeaderSigner(Buffer.alloc(16), 'c')).toThrow(/at least 32 bytes/);
  });
});
