import { z } from 'zod';
import {
  byteCountSchema,
  checkVersion,
  decodeJsonObject,
  isoTimestampSchema,
  parseWithSchema,
  requestIdSchema,
} from './copy-request';
import { holderIdSchema, imageIdSchema, nodeIdSchema } from './ids';

export const PROGRESS_EVENT_VERSION = 1;
export const PROGRESS_PHASES = ['waiting-for-lock', 'copying', 'verifying', 'publishing'] as const;
export type ProgressPhase = (typeof PROGRESS_PHASES)[number];

/** Loose for the same reason as results: readers ignore unknown fields. */
export const progressEventSchema = z
  .looseObject({
    v: z.literal(PROGRESS_EVENT_VERSION).describe('Wire format version.'),
    type: z.literal('progress'),
    requestId: requestIdSchema,
    imageId: imageIdSchema,
    source: nodeIdSchema,
    destination: nodeIdSchema,
    phase: z.enum(PROGRESS_PHASES),
    bytesDone: byteCountSchema,
    bytesTotal: byteCountSchema,
    conductorId: holderIdSchema,
    at: isoTimestampSchema,
  })
  .meta({
    title: 'Progress event v1',
    description:
      'Published to the events exchange with routing key progress.<destination> while a copy runs ' +
      '(never to reply_to). Best effort: events may be dropped or duplicated. Readers must ignore unknown fields.',
  });

export type ProgressEvent = z.infer<typeof progressEventSchema>;

export function parseProgressEvent(body: Buffer | string | unknown): ProgressEvent {
  const message = decodeJsonObject(body);
  checkVersion(message, PROGRESS_EVENT_VERSION);
  return parseWithSchema(progressEventSchema, message);
}
