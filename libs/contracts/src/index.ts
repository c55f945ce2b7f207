export * from './reason-codes';
export * from './reason-error';
export { errorText, isStaleHandle } from './error-text';
export * from './ids';
export {
  assertDeadlineNotPassed,
  byteCountSchema,
  COPY_PRIORITIES,
  COPY_REQUEST_VERSION,
  copyPrioritySchema,
  copyRequestSchema,
  MAX_REQUEST_BYTES,
  MessageValidationError,
  parseCopyRequest,
  peekReplyInfo,
  REQUEST_ID_MAX_LENGTH,
  requestIdSchema,
  sha256Schema,
  toFieldIssues,
  isoTimestampSchema,
  parseWithSchema,
  type CopyPriority,
  type CopyRequest,
  type FieldIssue,
  type ReplyInfo,
} from './copy-request';
export * from './copy-result';
export * from './progress-event';
export * from './cell-topology';
export type { Logger } from './logger';
export * from './job-id';
export * from './job-messages';
export * from './release';
