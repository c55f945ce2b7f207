import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Message } from 'amqplib';
import {
  HEADER_ATTEMPT,
  HEADER_DETAIL,
  HEADER_FIRST_SEEN,
  HEADER_REASON,
  HEADER_SIGNATURE,
} from '@app/contracts';

/** Where a delivery stands in its retries, as far as the conductor may believe it. */
export interface RetryState {
  /** 1-based attempt this delivery is; 1 unless a conductor of this cell signed another number. */
  attempt: number;
  /** When a conductor first saw the request; undefined unless signed (the caller uses now). */
  firstSeen: string | undefined;
  /** x-icc-* headers the delivery carried that were ignored for want of a valid signature. */
  ignored: string[];
}

const SIGNED_HEADERS = [HEADER_ATTEMPT, HEADER_FIRST_SEEN, HEADER_REASON, HEADER_DETAIL, HEADER_SIGNATURE];

/**
 * Signs and checks the retry headers (x-icc-attempt, x-icc-first-seen) with a key the conductors of one
 * cell share. A requester can set any header it likes, also x-death (so "it came back from our retry
 * queue" proves nothing) and can publish straight into a retry queue: only a signature it cannot compute
 * tells our retry copies from its messages. The MAC covers the cell, message_id, the body's sha256, the
 * attempt and the first-seen time, so a signature copied onto another request, another body or another
 * attempt number does not verify.
 */
export class RetryHeaderSigner {
  private readonly key: Buffer;

  constructor(
    key: Buffer,
    private readonly cellId: string,
  ) {
    if (key.length < 32)
      throw new RangeError(`retry header key: must be at least 32 bytes (got ${key.length})`);
    this.key = key;
  }

  sign(message: Pick<Message, 'content' | 'properties'>, attempt: number, firstSeen: string): string {
    const messageId = typeof message.properties.messageId === 'string' ? message.properties.messageId : '';
    const body = createHash('sha256').update(message.content).digest('hex');
    return createHmac('sha256', this.key)
      .update(['icc-retry-v1', this.cellId, messageId, body, String(attempt), firstSeen].join('\n'))
      .digest('hex');
  }

  /**
   * The retry state of a delivery. With a valid signature: the signed attempt (clamped to
   * 1..maxAttempts, in case MAX_ATTEMPTS was lowered since) and first-seen time; otherwise attempt 1 and
   * no first-seen, whatever the headers say, with the names of the headers ignored.
   */
  read(message: Pick<Message, 'content' | 'properties'>, maxAttempts: number): RetryState {
    const headers = (message.properties.headers ?? {}) as Record<string, unknown>;
    const present = SIGNED_HEADERS.filter((name) => headers[name] !== undefined);
    const attempt = headers[HEADER_ATTEMPT];
    const firstSeen = headers[HEADER_FIRST_SEEN];
    const signature = headers[HEADER_SIGNATURE];
    const wellFormed =
      typeof attempt === 'number' &&
      Number.isSafeInteger(attempt) &&
      // 1 too: a retry that did not count the attempt (CACHE_UNAVAILABLE) keeps its signed first-seen.
      attempt >= 1 &&
      typeof firstSeen === 'string' &&
      !Number.isNaN(Date.parse(firstSeen)) &&
      typeof signature === 'string' &&
      /^[0-9a-f]{64}$/.test(signature);
    if (wellFormed) {
      const expected = Buffer.from(this.sign(message, attempt, firstSeen), 'hex');
      if (timingSafeEqual(expected, Buffer.from(signature, 'hex')))
        return { attempt: Math.min(attempt, maxAttempts), firstSeen, ignored: [] };
    }
    // x-icc-reason / x-icc-detail alone do not matter (nothing reads them), but are reported with the rest.
    return { attempt: 1, firstSeen: undefined, ignored: present };
  }
}
