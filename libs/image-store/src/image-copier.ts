import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { ConductorError } from '@app/contracts';

export const COPY_CHUNK_BYTES = 1024 * 1024;

/** Positional reads and writes of one copy: file handles on the main thread, raw fds in a copy worker. */
export interface ChunkIo {
  /** Reads into `buffer` from `position`; 0 at the end of the file. */
  read(buffer: Buffer, position: number): Promise<number>;
  /** Writes `length` bytes of `buffer` from `offset` at `position`; resolves with the bytes written. */
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<number>;
}

export interface StreamCopyOptions {
  from: FileHandle;
  to: FileHandle;
  /** More bytes than this is a failure as soon as they arrive, not after copying a runaway file. */
  maxBytes?: number;
  signal?: AbortSignal;
  onProgress?: (bytesDone: number) => void;
  /** Map read and write errors (the same errno means different things at either end). */
  readError: (error: unknown) => unknown;
  writeError: (error: unknown) => unknown;
  /** Names the copy in error messages. */
  describe: string;
}

export interface StreamCopyResult {
  bytes: number;
  sha256: string;
}

/** Runs the streaming copy of a publish: on the main thread (`inlineCopier`) or in a `CopyWorkerPool`. */
export interface StreamCopier {
  copy(options: StreamCopyOptions): Promise<StreamCopyResult>;
  /** Stops the copier's threads, if any; copies still running fail. */
  close(): Promise<void>;
}

export const inlineCopier: StreamCopier = {
  copy: (options) => copyChunks({ ...options, io: fileHandleIo(options.from, options.to) }),
  close: () => Promise.resolve(),
};

export function fileHandleIo(from: FileHandle, to: FileHandle): ChunkIo {
  return {
    read: (buffer, position) =>
      from.read(buffer, 0, buffer.length, position).then((result) => result.bytesRead),
    write: (buffer, offset, length, position) =>
      to.write(buffer, offset, length, position).then((result) => result.bytesWritten),
  };
}

export type CopyChunksOptions = Omit<StreamCopyOptions, 'from' | 'to'> & { io: ChunkIo };

/**
 * Copies and hashes on the way, with two fixed 1 MiB buffers: the next chunk is read while the current
 * one is written and hashed. Memory stays flat whatever the size, and nothing is allocated per chunk
 * (fs.createReadStream allocates a fresh buffer for every read).
 */
export async function copyChunks(options: CopyChunksOptions): Promise<StreamCopyResult> {
  const { io, maxBytes, signal, onProgress, readError, writeError, describe } = options;
  throwIfAborted(signal);
  const hash = createHash('sha256');
  const buffers = [Buffer.allocUnsafe(COPY_CHUNK_BYTES), Buffer.allocUnsafe(COPY_CHUNK_BYTES)];
  const read = (index: number, position: number): Promise<number> =>
    io.read(buffers[index], position).catch((error: unknown) => {
      throw readError(error);
    });

  let current = 0;
  let bytes = 0;
  let pending: Promise<number> | undefined = read(current, 0);
  try {
    for (;;) {
      const bytesRead = await pending;
      pending = undefined;
      if (bytesRead === 0) break;
      const chunk = buffers[current].subarray(0, bytesRead);
      const offset = bytes;
      bytes += bytesRead;
      if (maxBytes !== undefined && bytes > maxBytes) {
        throw new ConductorError(
          'SIZE_MISMATCH',
          `${describe}: more than the expected ${maxBytes} bytes arrived`,
        );
      }
      current ^= 1;
      // Three things at once: the next read and this write run on libuv's threads while this thread hashes.
      // Both only read `chunk`, and its buffer is not reused before the write has finished.
      pending = read(current, bytes);
      const writing = writeAll(io, chunk, offset).catch((error: unknown) => {
        throw writeError(error);
      });
      try {
        hash.update(chunk);
      } finally {
        await writing;
      }
      onProgress?.(bytes);
      throwIfAborted(signal);
    }
  } finally {
    // A read still in flight after a failure writes into our buffer and holds the file: let it settle
    // before the caller closes the file. Its own outcome no longer matters, the first error is reported.
    if (pending) await pending.then(ignore, ignore);
  }
  return { bytes, sha256: hash.digest('hex') };
}

async function writeAll(io: ChunkIo, chunk: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < chunk.length) {
    written += await io.write(chunk, written, chunk.length - written, position + written);
  }
}

/** signal.reason when it is an Error (AbortController.abort() gives an AbortError), else SHUTTING_DOWN. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new ConductorError(
    'SHUTTING_DOWN',
    `copy aborted${reason === undefined ? '' : `: ${String(reason)}`}`,
  );
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

function ignore(): void {
  // Deliberately empty: see the `finally` in copyChunks.
}
