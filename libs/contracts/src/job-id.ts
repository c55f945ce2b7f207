import { safeName } from './ids';

/** A request id's limit (128) holds `<jobId>.<node>` (63 + 1 + 64): a job's copies are named so. */
export const JOB_ID_MAX_LENGTH = 63;

export const jobIdSchema = safeName(JOB_ID_MAX_LENGTH).describe(
  'Chosen by the requester; identifies the job, its record and every event about it.',
);
