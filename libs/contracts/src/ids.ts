import { z } from 'zod';
import { ReasonError } from './reason-error';

/**
 * Node and image ids become path segments under CACHE_ROOT, so they are validated names: ASCII letters,
 * digits, '.', '_' and '-', starting with a letter or digit, no '..', bounded length. Nothing a request
 * says can make the conductor touch a path outside CACHE_ROOT.
 */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function safeName(maxLength: number) {
  return z
    .string()
    .min(1, 'must not be empty')
    .max(maxLength, `must be at most ${maxLength} characters`)
    .regex(SAFE_NAME, "must start with a letter or digit and contain only letters, digits, '.', '_' or '-'")
    .refine((s) => !s.includes('..'), "must not contain '..'");
}

export const NODE_ID_MAX_LENGTH = 64;
export const IMAGE_ID_MAX_LENGTH = 128;

export const nodeIdSchema = safeName(NODE_ID_MAX_LENGTH).describe(
  'A compute node id (a folder under CACHE_ROOT).',
);
export const imageIdSchema = safeName(IMAGE_ID_MAX_LENGTH)
  // The meta file sits beside the image as <imageId>.meta.json: an image may not be named like one.
  .refine((s) => !s.endsWith('.meta.json'), "must not end with '.meta.json'")
  .describe('An image id (a file name in a node cache).');
/** Conductor ids and attempt ids end up in lock file names, so they follow the same rule. */
export const holderIdSchema = safeName(64).describe('A conductor or attempt id.');
export const cellIdSchema = safeName(64).describe('A cell id (part of every queue and exchange name).');

export type NodeId = z.infer<typeof nodeIdSchema>;
export type ImageId = z.infer<typeof imageIdSchema>;

/** Parses `value` with `schema`, or throws an INVALID_REQUEST error naming `field` and the reason. */
export function parseField<T>(schema: z.ZodType<T>, value: unknown, field: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const reason = result.error.issues.map((issue) => issue.message).join('; ');
  throw new InvalidFieldError(field, reason);
}

export class InvalidFieldError extends ReasonError {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super('INVALID_REQUEST', `${field}: ${reason}`);
    this.name = 'InvalidFieldError';
  }
}
