import { z } from 'zod';

/** A request id's limit (128) holds `<jobId>.<node>` (63 + 1 + 64): a job's copies are named so. */
export const JOB_ID_MAX_LENGTH = 63;

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export const jobIdSchema = z
  .string()
  .min(1, 'must not be empty')
  .max(JOB_ID_MAX_LENGTH, `must be at most ${JOB_ID_MAX_LENGTH} characters`)
  .regex(SAFE_NAME, "must start with a letter or digit and contain only letters, digits, '.', '_' or '-'")
  .refine((s) => !s.includes('..'), "must not contain '..'")
  .describe('Chosen by the requester; identifies the job, its record and every event about it.');
