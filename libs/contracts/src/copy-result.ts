import { z } from 'zod';
import {
  byteCountSchema,
  checkVersion,
  decodeJsonObject,
  isoTimestampSchema,
  parseWithSchema,
  requestIdSchema,
  sha256Schema,
} from './copy-request';
import { holderIdSchema, imageIdSchema, nodeIdSchema } from './ids';
import { REASON_CODE_LIST } from './reason-codes';

export const COPY_RESULT_VERSION = 1;
export const COPY_RESULT_STATUSES = ['completed', 'already-present', 'failed'] as const;
export type CopyResultStatus = (typeof COPY_RESULT_STATUSES)[number];

/** The requestId of a result about a message whose own requestId (and message_id) could not be read. */
export const UNKNOWN_REQUEST_ID = 'unknown';

const durationMs = z.number().min(0, 'must not be negative');

/**
 * Events are loose objects, unlike requests: readers must ignore fields they do not know, so the
 * conductor can add a field within v1 without breaking consumers written in other languages.
 */
export const copyResultSchema = z
  .looseObject({
    v: z.literal(COPY_RESULT_VERSION).describe('Wire format version.'),
    type: z.literal('result'),
    requestId: requestIdSchema,
    imageId: imageIdSchema.optional(),
    source: nodeIdSchema.describe('The node actually copied from.').optional(),
    destination: nodeIdSchema.optional(),
    status: z
      .enum(COPY_RESULT_STATUSES)
      .describe(
        'completed: copied and verified; already-present: the destination already held a verified copy.',
      ),
    reason: z.enum(REASON_CODE_LIST).describe('Why it failed (status failed only).').optional(),
    detail: z.string().max(4096).describe('Human-readable detail of the failure.').optional(),
    retryable: z
      .boolean()
      .describe(
        'Status failed only. true: this attempt failed and the request was scheduled for another attempt, ' +
          'so another result follows. false: final.',
      )
      .optional(),
    bytes: byteCountSchema
      .describe('Size of the image at the destination (completed and already-present).')
      .optional(),
    sha256: sha256Schema
      .describe('sha256 of the image at the destination (completed and already-present).')
      .optional(),
    attempt: z.int().min(1).describe('1-based attempt number that produced this result.'),
    durations: z.looseObject({
      totalMs: durationMs.describe('From the first time the conductor saw the request to this result.'),
      lockWaitMs: durationMs.optional(),
      copyMs: durationMs.optional(),
      verifyMs: durationMs.optional(),
    }),
    conductorId: holderIdSchema,
    at: isoTimestampSchema.describe('When the result was produced.'),
  })
  .refine((r) => (r.status === 'failed') === (r.reason !== undefined), {
    path: ['reason'],
    message: 'must be present exactly when status is failed',
  })
  .refine((r) => (r.status === 'failed') === (r.retryable !== undefined), {
    path: ['retryable'],
    message: 'must be present exactly when status is failed',
  })
  .meta({
    title: 'Copy result v1',
    description:
      'The outcome of a copy request: published to the reply_to queue (with the same correlation_id) and to ' +
      'the events exchange with routing key result.<status>. Readers must ignore unknown fields.',
  });

export type CopyResult = z.infer<typeof copyResultSchema>;

/** A result the requester keeps waiting past: a failed attempt that will be retried. */
export function isFinalResult(result: Pick<CopyResult, 'status' | 'retryable'>): boolean {
  return result.status !== 'failed' || result.retryable !== true;
}

/** Parses a result event (for requesters and the CLI); throws INVALID_REQUEST naming the field. */
export function parseCopyResult(body: Buffer | string | unknown): CopyResult {
  const message = decodeJsonObject(body);
  checkVersion(message, COPY_RESULT_VERSION);
  return parseWithSchema(copyResultSchema, message);
}
