import { type Dirent, promises as fsp } from 'node:fs';
import { ReasonError, isReasonError, isStaleHandle } from '@app/contracts';

/**
 * Which end of a copy an operation touches: the same errno means different things at either end. 'cache'
 * is neither (listing, touching meta): only NO_SPACE and IO_ERROR apply there.
 */
export type CacheSide = 'source' | 'destination' | 'cache';

export interface IoContext {
  side: CacheSide;
  /** Names what was touched in messages, e.g. "destination node b, image ubuntu-24.04". */
  what: string;
}

const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);
// A cache folder we may not write, or whose layout is broken (a file where a folder belongs): retrying
// does not help, so these are not IO_ERROR.
const DESTINATION_NOT_WRITABLE = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOTDIR', 'EISDIR']);
const SOURCE_GONE = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'ELOOP']);

/**
 * The error's code is one of `codes` (any errno error when none is given). Asking for ENOENT also matches
 * ESTALE: GlusterFS's and NFS's answer for a file or folder another client removed meanwhile, which Node
 * names only "Unknown system error -116" (the lock steps read it the same way: isGone in libs/locking).
 */
export function isErrno(error: unknown, ...codes: string[]): error is NodeJS.ErrnoException {
  const code = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
  if (typeof code !== 'string') return false;
  if (codes.length === 0 || codes.includes(code)) return true;
  return codes.includes('ENOENT') && isStaleHandle(error);
}

/**
 * Turns a file-system error into the ReasonError the wire format speaks. Anything that is not an errno
 * error (a bug, or an error from a caller's callback) passes through unchanged.
 */
export function mapIoError(error: unknown, context: IoContext, action: string): unknown {
  if (isReasonError(error) || !isErrno(error)) return error;
  const code = error.code as string;
  const detail = `${context.what}: ${action} failed (${code})`;
  if (NO_SPACE.has(code)) {
    return new ReasonError('NO_SPACE', `${detail}: no space left on the cache file system`, {
      cause: error,
    });
  }
  if (context.side === 'destination' && DESTINATION_NOT_WRITABLE.has(code)) {
    return new ReasonError('DESTINATION_READ_ONLY', `${detail}: the cache is not writable`, {
      cause: error,
    });
  }
  if (context.side === 'source' && SOURCE_GONE.has(code)) {
    return new ReasonError('SOURCE_MISSING', `${detail}: the image is not there`, { cause: error });
  }
  return new ReasonError('IO_ERROR', `${detail}: ${error.message}`, { cause: error });
}

/** Runs one file-system operation, mapping its failure with `mapIoError`. */
export async function io<T>(context: IoContext, action: string, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw mapIoError(error, context, action);
  }
}

/** Which errors of a folder listing mean "no folder yet" (see readFolderOrEmpty). */
export interface FolderReadOptions {
  /** Errno codes answered with an empty listing; default ENOENT only (a file at the path is an error). */
  absent?: readonly string[];
}

/**
 * The names in `folder`, or none when it does not exist (yet): a node with no cache, no tmp folder. Other
 * failures are mapped like `io`. With `withFileTypes`, the entries as Dirents.
 */
export function readFolderOrEmpty(
  folder: string,
  context: IoContext,
  action: string,
  options?: FolderReadOptions & { withFileTypes?: false },
): Promise<string[]>;
export function readFolderOrEmpty(
  folder: string,
  context: IoContext,
  action: string,
  options: FolderReadOptions & { withFileTypes: true },
): Promise<Dirent[]>;
export async function readFolderOrEmpty(
  folder: string,
  context: IoContext,
  action: string,
  options: FolderReadOptions & { withFileTypes?: boolean } = {},
): Promise<string[] | Dirent[]> {
  try {
    return options.withFileTypes
      ? await fsp.readdir(folder, { withFileTypes: true })
      : await fsp.readdir(folder);
  } catch (error) {
    if (isErrno(error, ...(options.absent ?? ['ENOENT']))) return [];
    throw mapIoError(error, context, action);
  }
}
