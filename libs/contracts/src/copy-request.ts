import { z } from 'zod';
import { ReasonError } from './reason-error';
import { imageIdSchema, InvalidFieldError, nodeIdSchema } from './ids';
import { jobIdSchema } from './job-id';

/** Bodies above this size are refused before JSON.parse: a request is a few hundred bytes. */
export const MAX_REQUEST_BYTES = 16 * 1024;
export const COPY_REQUEST_VERSION = 1;
export const REQUEST_ID_MAX_LENGTH = 128;

/**
 * Same rule as the ids in ids.ts (which does not export its helper): request ids end up in log lines,
 * attempt ids and possibly file names, so they get the same safe-name treatment.
 */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export const requestIdSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(REQUEST_ID_MAX_LENGTH, `must be at most ${REQUEST_ID_MAX_LENGTH} characters`)
  .regex(SAFE_NAME, "must start with a letter or digit and contain only letters, digits, '.', '_' or '-'")
  .refine((s) => !s.includes('..'), "must not contain '..'")
  .describe(
    'Chosen by the requester; identifies the request and every event about it (results may be duplicated).',
  );

export const sha256Schema = z
  .string()
  .regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hexadecimal characters')
  .describe('SHA-256 of the image bytes, lowercase hex.');

export const byteCountSchema = z
  .int('must be a whole number')
  .min(0, 'must not be negative')
  .max(Number.MAX_SAFE_INTEGER, 'must be a safe integer');

/** ISO-8601 with a time and a zone (`Z` or `+02:00`): a deadline without a zone means nothing. */
export const isoTimestampSchema = z.iso.datetime({
  offset: true,
  error: 'must be an ISO-8601 timestamp with a time zone, e.g. 2025-01-31T12:00:00Z',
});

export const COPY_PRIORITIES = ['interactive', 'background'] as const;
export const copyPrioritySchema = z
  .enum(COPY_PRIORITIES, { error: 'must be "interactive" or "background"' })
  .describe(
    'Bandwidth class of the copy (default interactive): "background" (pre-cache) copies get the lower ' +
      'background caps, and wait while an interactive copy waits for the same node.',
  );
export type CopyPriority = z.infer<typeof copyPrioritySchema>;

export const copyRequestSchema = z
  .strictObject({
    v: z.literal(COPY_REQUEST_VERSION).describe('Wire format version.'),
    requestId: requestIdSchema,
    imageId: imageIdSchema,
    destination: nodeIdSchema.describe('The node whose cache receives the image.'),
    source: nodeIdSchema
      .describe('The node to copy from; when absent the conductor picks a node that holds a verified copy.')
      .optional(),
    sha256: sha256Schema
      .describe('Expected SHA-256; when absent the source meta file is trusted.')
      .optional(),
    size: byteCountSchema.describe('Expected size in bytes.').optional(),
    jobId: jobIdSchema
      .describe('Set by a conductor on the copies of a pre-cache job: the job this copy belongs to.')
      .optional(),
    // Not an AMQP message priority (quorum queues on RabbitMQ 3.x ignore those): it picks the copy's
    // bandwidth class once a conductor works on it.
    priority: copyPrioritySchema.optional(),
    deadline: isoTimestampSchema
      .describe('After this instant the request is answered DEADLINE_EXCEEDED instead of being worked on.')
      .optional(),
  })
  .refine((r) => r.source === undefined || r.source !== r.destination, {
    path: ['source'],
    message: 'must differ from destination',
  })
  .meta({
    title: 'Copy request v1',
    description:
      'Asks a conductor to copy one image into the cache of one node. Published to icc.<cell>.requests; ' +
      'unknown fields are rejected.',
  });

export type CopyRequest = z.infer<typeof copyRequestSchema>;

export interface FieldIssue {
  /** Dotted path of the offending field; `body` for the message as a whole. */
  readonly field: string;
  readonly reason: string;
}

/** An INVALID_REQUEST error that lists every problem found, not only the first. */
export class MessageValidationError extends InvalidFieldError {
  constructor(readonly issues: readonly [FieldIssue, ...FieldIssue[]]) {
    super(issues[0].field, issues[0].reason);
    this.name = 'MessageValidationError';
    this.message = issues.map((i) => `${i.field}: ${i.reason}`).join('; ');
  }
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function issuePath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? 'body' : path.map(String).join('.');
}

/** Turns zod issues into `field: reason` pairs phrased for someone who only sees the wire format. */
export function toFieldIssues(issues: readonly z.core.$ZodIssue[]): FieldIssue[] {
  const out: FieldIssue[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({ field: issuePath([...issue.path, key]), reason: 'unknown field' });
      }
    } else if (issue.code === 'invalid_type') {
      const reason =
        issue.input === undefined
          ? 'is required'
          : `must be ${issue.expected === 'int' ? 'a whole number' : `a ${issue.expected}`} (got ${describeType(issue.input)})`;
      out.push({ field: issuePath(issue.path), reason });
    } else if (issue.code === 'invalid_value') {
      if (issue.input === undefined) {
        out.push({ field: issuePath(issue.path), reason: 'is required' });
        continue;
      }
      const expected = issue.values.map((v) => JSON.stringify(v)).join(' or ');
      out.push({ field: issuePath(issue.path), reason: `must be ${expected}` });
    } else {
      out.push({ field: issuePath(issue.path), reason: issue.message });
    }
  }
  return out;
}

/** Parses with `schema` or throws a MessageValidationError naming each field. */
export function parseWithSchema<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  const issues = toFieldIssues(result.error.issues);
  throw new MessageValidationError(
    issues.length > 0
      ? (issues as [FieldIssue, ...FieldIssue[]])
      : [{ field: 'body', reason: 'is not valid' }],
  );
}

function invalidBody(reason: string): MessageValidationError {
  return new MessageValidationError([{ field: 'body', reason }]);
}

/**
 * Decodes a message body into a JSON object. Buffers and strings are JSON text (size-checked before
 * parsing); anything else is taken as an already-parsed value.
 */
export function decodeJsonObject(body: unknown, maxBytes = MAX_REQUEST_BYTES): Record<string, unknown> {
  let value: unknown = body;
  if (Buffer.isBuffer(body) || typeof body === 'string') {
    const size = Buffer.isBuffer(body) ? body.length : Buffer.byteLength(body, 'utf8');
    if (size > maxBytes) throw invalidBody(`must be at most ${maxBytes} bytes (got ${size})`);
    const text = Buffer.isBuffer(body) ? body.toString('utf8') : body;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw invalidBody(`not valid JSON (${(error as Error).message})`);
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidBody(`must be a JSON object (got ${describeType(value)})`);
  }
  return value as Record<string, unknown>;
}

/** Refuses a message whose `v` is present but not `expected`, before field validation says anything. */
export function checkVersion(message: Record<string, unknown>, expected: number): void {
  if ('v' in message && message.v !== expected) {
    throw new ReasonError(
      'UNSUPPORTED_VERSION',
      `v: unsupported version ${JSON.stringify(message.v)}; this conductor speaks version ${expected}`,
    );
  }
}

/**
 * Parses a copy request from a message body. Throws a ReasonError: UNSUPPORTED_VERSION when `v` is
 * present but not 1, otherwise INVALID_REQUEST (a MessageValidationError) whose message names each field
 * and its problem, e.g. `destination: must not contain '..'` or `body: not valid JSON (...)`.
 */
export function parseCopyRequest(body: Buffer | string | unknown): CopyRequest {
  const message = decodeJsonObject(body);
  checkVersion(message, COPY_REQUEST_VERSION);
  return parseWithSchema(copyRequestSchema, message);
}

/** Throws DEADLINE_EXCEEDED when the request's deadline is at or before `now`. */
export function assertDeadlineNotPassed(
  request: Pick<CopyRequest, 'deadline'>,
  now: Date = new Date(),
): void {
  if (request.deadline === undefined) return;
  if (Date.parse(request.deadline) <= now.getTime()) {
    throw new ReasonError('DEADLINE_EXCEEDED', `deadline: ${request.deadline} has passed`);
  }
}

export interface ReplyInfo {
  requestId?: string;
  imageId?: string;
  source?: string;
  destination?: string;
}

const PEEKED_FIELDS = {
  requestId: requestIdSchema,
  imageId: imageIdSchema,
  source: nodeIdSchema,
  destination: nodeIdSchema,
} as const;

/**
 * Best effort: the identifying fields of a message that failed to parse, so the failed result can still
 * carry them. Only values that are themselves valid are returned (a result never echoes a hostile id).
 * Falls back to a regex scan of the first MAX_REQUEST_BYTES when the body is not a JSON object, and to
 * `fallbackRequestId` (typically the AMQP message_id) for the requestId.
 */
export function peekReplyInfo(body: Buffer | string | unknown, fallbackRequestId?: unknown): ReplyInfo {
  let candidates: Record<string, unknown> = {};
  try {
    candidates = decodeJsonObject(body);
  } catch {
    // Expected for malformed bodies: scan the text instead.
    const text = Buffer.isBuffer(body)
      ? body.subarray(0, MAX_REQUEST_BYTES).toString('utf8')
      : typeof body === 'string'
        ? body.slice(0, MAX_REQUEST_BYTES)
        : '';
    for (const field of Object.keys(PEEKED_FIELDS)) {
      const match = new RegExp(`"${field}"\\s*:\\s*"([^"\\\\]{1,${REQUEST_ID_MAX_LENGTH}})"`).exec(text);
      if (match) candidates[field] = match[1];
    }
  }
  const info: ReplyInfo = {};
  for (const [field, schema] of Object.entries(PEEKED_FIELDS) as [keyof ReplyInfo, z.ZodType<string>][]) {
    const parsed = schema.safeParse(candidates[field]);
    if (parsed.success) info[field] = parsed.data;
  }
  if (info.requestId === undefined) {
    const parsed = requestIdSchema.safeParse(fallbackRequestId);
    if (parsed.success) info.requestId = parsed.data;
  }
  return info;
}
