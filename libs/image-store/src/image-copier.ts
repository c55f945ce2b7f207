import { type Hash, createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { ReasonError } from '@app/contracts';

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
  /** Continue a resumed partial copy: its first `bytes` are in `to` already and went into `hash`. */
  start?: { bytes: number; hash: Hash };
  /** Called each time `everyBytes` more bytes were written (before the next write), with the prefix's sha256. */
  checkpoint?: { everyBytes: number; save: (bytes: number, prefixSha256: string) => Promise<void> };
  /** Bandwidth caps: awaited after each read (with the bytes read) and before each write. */
  pace?: StreamPace;
}

/** Waits that keep a copy within its byte-rate caps; both get the copy's abort signal. */
export interface StreamPace {
  afterRead(bytes: number, signal?: AbortSignal): Promise<void>;
  beforeWrite(bytes: number, signal?: AbortSignal): Promise<void>;
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
  return { read: handleRead(from), write: handleWrite(to) };
}

export function handleRead(from: FileHandle): ChunkIo['read'] {
  return (buffer, position) =>
    from.read(buffer, 0, buffer.length, position).then((result) => result.bytesRead);
}

function handleWrite(to: FileHandle): ChunkIo['write'] {
  return (buffer, offset, length, position) =>
    to.write(buffer, offset, length, position).then((result) => result.bytesWritten);
}

export type CopyChunksOptions = Omit<StreamCopyOptions, 'from' | 'to'> & { io: ChunkIo };

/**
 * A read started ahead of the write it overlaps: if it fails while the loop awaits that write (a mount
 * that died), nothing awaits it yet, and an unhandled rejection would end the process or worker thread.
 * It is marked handled here; the loop still awaits it and sees its error.
 */
function readAhead(read: Promise<number>): Promise<number> {
  read.catch(ignore);
  return read;
}

/**
 * Copies and hashes on the way, with two fixed 1 MiB buffers: the next chunk is read while the current
 * one is written and hashed. Memory stays flat whatever the size, and nothing is allocated per chunk
 * (fs.createReadStream allocates a fresh buffer for every read).
 */
export async function copyChunks(options: CopyChunksOptions): Promise<StreamCopyResult> {
  const { io, maxBytes, signal, onProgress, readError, writeError, describe, checkpoint, pace } = options;
  throwIfAborted(signal);
  const hash = options.start?.hash ?? createHash('sha256');
  const buffers = [Buffer.allocUnsafe(COPY_CHUNK_BYTES), Buffer.allocUnsafe(COPY_CHUNK_BYTES)];
  const read = (index: number, position: number): Promise<number> =>
    io
      .read(buffers[index], position)
      .catch((error: unknown) => {
        throw readError(error);
      })
      .then(async (bytesRead) => {
        if (pace && bytesRead > 0) await pace.afterRead(bytesRead, signal);
        return bytesRead;
      });

  let current = 0;
  let bytes = options.start?.bytes ?? 0;
  let nextCheckpoint = checkpoint ? bytes + checkpoint.everyBytes : Infinity;
  let pending: Promise<number> | undefined = readAhead(read(current, bytes));
  try {
    for (;;) {
      const bytesRead = await pending;
      pending = undefined;
      if (bytesRead === 0) break;
      const chunk = buffers[current].subarray(0, bytesRead);
      const offset = bytes;
      bytes += bytesRead;
      if (maxBytes !== undefined && bytes > maxBytes) {
        throw new ReasonError(
          'SIZE_MISMATCH',
          `${describe}: more than the expected ${maxBytes} bytes arrived`,
        );
      }
      current ^= 1;
      // Three things at once: the next read and this write run on libuv's threads while this thread hashes.
      // Both only read `chunk`, and its buffer is not reused before the write has finished.
      pending = readAhead(read(current, bytes));
      const writing = (pace ? pace.beforeWrite(chunk.length, signal) : Promise.resolve())
        .then(() => writeAll(io, chunk, offset))
        .catch((error: unknown) => {
          throw writeError(error);
        });
      try {
        hash.update(chunk);
      } finally {
        await writing;
      }
      if (checkpoint && bytes >= nextCheckpoint) {
        await checkpoint.save(bytes, hash.copy().digest('hex'));
        nextCheckpoint = bytes + checkpoint.everyBytes;
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

export interface ChunkCopyOptions {
  chunks: AsyncIterable<Uint8Array>;
  to: FileHandle;
  maxBytes?: number;
  signal?: AbortSignal;
  onProgress?: (bytesDone: number) => void;
  writeError: (error: unknown) => unknown;
  describe: string;
}

/**
 * Writes a stream of chunks (a download) into `to`, hashing on the way. Errors of the stream itself are
 * the producer's to name (an origin's reason codes) and pass through unchanged.
 */
export async function chunkCopy(options: ChunkCopyOptions): Promise<{ bytes: number; sha256: string }> {
  const { chunks, to, maxBytes, signal, onProgress, writeError, describe } = options;
  throwIfAborted(signal);
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const data of chunks) {
    const chunk = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (maxBytes !== undefined && bytes + chunk.length > maxBytes) {
      throw new ReasonError('SIZE_MISMATCH', `${describe}: more than the expected ${maxBytes} bytes arrived`);
    }
    hash.update(chunk);
    await writeAll({ write: handleWrite(to) }, chunk, bytes).catch((error: unknown) => {
      throw writeError(error);
    });
    bytes += chunk.length;
    onProgress?.(bytes);
    throwIfAborted(signal);
  }
  return { bytes, sha256: hash.digest('hex') };
}

async function writeAll(io: Pick<ChunkIo, 'write'>, chunk: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < chunk.length) {
    written += await io.write(chunk, written, chunk.length - written, position + written);
  }
}

/**
 * The sha256 state over the first `bytes` of a file (a partial copy to continue), read with `read`
 * (ChunkIo.read: a file handle on the main thread, a descriptor in a copy worker).
 */
export async function hashPrefix(read: ChunkIo['read'], bytes: number): Promise<Hash> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(COPY_CHUNK_BYTES);
  let done = 0;
  while (done < bytes) {
    const bytesRead = await read(buffer.subarray(0, Math.min(buffer.length, bytes - done)), done);
    if (bytesRead === 0)
      throw new ReasonError('IO_ERROR', `the partial copy ended at ${done} of ${bytes} bytes`);
    hash.update(buffer.subarray(0, bytesRead));
    done += bytesRead;
  }
  return hash;
}

/** signal.reason when it is an Error (AbortController.abort() gives an AbortError), else SHUTTING_DOWN. */
export function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new ReasonError('SHUTTING_DOWN', `copy aborted${reason === undefined ? '' : `: ${String(reason)}`}`);
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

function ignore(): void {
  // Deliberately empty: see the `finally` in copyChunks.
}
