/**
 * Failure reasons: the wire format's `reason` field, the dead-letter header and the error classes all use
 * these codes. `retryable` decides whether the conductor sends a request to the delayed-retry path or
 * answers it as failed and dead-letters it.
 */
export const REASON_CODES = {
  INVALID_REQUEST: {
    retryable: false,
    meaning: 'The message is not a valid copy request (the detail names the field).',
  },
  UNSUPPORTED_VERSION: {
    retryable: false,
    meaning: 'The message has a version ("v") this conductor does not speak.',
  },
  UNKNOWN_NODE: {
    retryable: false,
    meaning:
      'The source or destination names a node that is not registered in the cell (`icc node add`); nothing was created or locked.',
  },
  SOURCE_MISSING: {
    retryable: false,
    meaning:
      'No verified copy of the image on the named source node, or on any node when no source was named.',
  },
  CHECKSUM_MISMATCH: {
    retryable: false,
    meaning: 'The copied bytes do not match the expected sha256; nothing was published.',
  },
  SIZE_MISMATCH: {
    retryable: false,
    meaning: 'The copied bytes do not match the expected size; nothing was published.',
  },
  DESTINATION_READ_ONLY: { retryable: false, meaning: "The destination node's cache is not writable." },
  DEADLINE_EXCEEDED: {
    retryable: false,
    meaning: 'The request reached its deadline before it could be done.',
  },
  RETRIES_EXHAUSTED: {
    retryable: false,
    meaning: 'A retryable failure happened on every allowed attempt; the last reason is in the detail.',
  },
  ORIGIN_NOT_FOUND: {
    retryable: false,
    meaning: "The cell's origin answered 404 for the image: it does not know it; nothing was published.",
  },
  ORIGIN_UNAUTHORIZED: {
    retryable: false,
    meaning:
      "The cell's origin refused the conductor's credentials (401 or 403; see ORIGIN_AUTH_HEADER); nothing was published.",
  },
  ORIGIN_BAD_RESPONSE: {
    retryable: false,
    meaning:
      "The origin's answer cannot be used: an unexpected status, a malformed checksum or length header, a resumed body that does not fit, or no checksum at all (none in the request either); nothing was published.",
  },
  CANCELLED: {
    retryable: false,
    meaning:
      'The request (or its job) was cancelled: a queued one was not started; a running one was aborted, its partial copy removed and its locks released.',
  },
  LOCK_TIMEOUT: {
    retryable: true,
    meaning: 'A lock on the source or destination could not be taken within the lock wait limit.',
  },
  LOCK_LOST: {
    retryable: true,
    meaning:
      'A lock was lost during the copy (holder paused past the stale time, or lock removed); the copy was aborted unpublished.',
  },
  NO_SPACE: { retryable: true, meaning: 'The destination ran out of space; the partial copy was removed.' },
  IO_ERROR: { retryable: true, meaning: 'A transient file-system error; the partial copy was removed.' },
  ORIGIN_UNAVAILABLE: {
    retryable: true,
    meaning:
      "The cell's origin could not be reached or kept failing (refused connections, 5xx, connections dropped on every allowed attempt); nothing was published.",
  },
  CACHE_UNAVAILABLE: {
    retryable: true,
    meaning:
      "The conductor's CACHE_ROOT is not the cell's folder right now (its network mount died): nothing there can be judged absent, so the request is retried (the attempt does not count) until the folder is back or its deadline passes.",
  },
  SHUTTING_DOWN: {
    retryable: true,
    meaning: 'The conductor stopped before finishing; the request went back to the queue.',
  },
  INTERNAL: {
    retryable: true,
    meaning: 'An unexpected error in the conductor (a bug): retried, then dead-lettered.',
  },
} as const satisfies Record<string, { retryable: boolean; meaning: string }>;

export type ReasonCode = keyof typeof REASON_CODES;

export const REASON_CODE_LIST = Object.keys(REASON_CODES) as [ReasonCode, ...ReasonCode[]];

export function isRetryable(code: ReasonCode): boolean {
  return REASON_CODES[code].retryable;
}
