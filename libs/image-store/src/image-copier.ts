import { type Hash, createHash } from 'node:crypto';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { ReasonError, isReasonError } from '@app/contracts';
import { PieceHasher } from './piece-hasher';

export const COPY_CHUNK_BYTES = 1024 * 1024;

/** Opens a published image to read from: O_NOFOLLOW, as it is a regular file; a symlink swapped in would read outside the cache. */
export function openPublishedImage(file: string): Promise<FileHandle> {
  return fsp.open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
}
/**
 * Buffers in one copy's ring (copyChunks): the chunk being written, and reads ahead in the others. More
 * reads ahead measured no reliable gain (bench/copy-ring.ts, bench/RESULTS.md), so one.
 */
export const COPY_BUFFERS = 2;

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
  /**
   * Continue a resumed partial copy: its first `bytes` are in `to` already and, by its record, have this
   * sha256. The copier re-hashes them (reading `to`, where the copy runs: a copy worker or this thread),
   * once, and fails with PrefixMismatchError when they do not match.
   */
  start?: { bytes: number; sha256: string };
  /** Called each time `everyBytes` more bytes were written (before the next write), with the prefix's sha256. */
  checkpoint?: { everyBytes: number; save: (bytes: number, prefixSha256: string) => Promise<void> };
  /** Bandwidth caps: awaited after each read (with the bytes read) and before each write. */
  pace?: StreamPace;
  /** Also hash each piece of this many bytes (a resumed prefix's too): the result's `pieces`. */
  pieceBytes?: number;
}

/** Waits that keep a copy within its byte-rate caps; both get the copy's abort signal. */
export interface StreamPace {
  afterRead(bytes: number, signal?: AbortSignal): Promise<void>;
  beforeWrite(bytes: number, signal?: AbortSignal): Promise<void>;
}

export interface StreamCopyResult {
  bytes: number;
  sha256: string;
  /** With `pieceBytes`: each piece's sha256 (piece-hasher.ts); absent past the list's limit. */
  pieces?: string[];
}

/** Runs the streaming copy of a publish: on the main thread (`inlineCopier`) or in a `CopyWorkerPool`. */
export interface StreamCopier {
  copy(options: StreamCopyOptions): Promise<StreamCopyResult>;
  /** Stops the copier's threads, if any; copies still running fail. */
  close(): Promise<void>;
}

export const inlineCopier: StreamCopier = {
  copy: async (options) => {
    const { start, ...rest } = options;
    const hashed =
      start &&
      (await verifiedPrefix(
        handleRead(options.to),
        start,
        options.describe,
        options.writeError,
        options.pieceBytes,
      ));
    return copyChunks({
      ...rest,
      ...(hashed ? { start: hashed } : {}),
      io: fileHandleIo(options.from, options.to),
    });
  },
  close: () => Promise.resolve(),
};

/** A resumed partial's recorded prefix did not re-hash to its record's sha256: copy from zero instead. */
export class PrefixMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PrefixMismatchError';
  }
}

/**
 * Re-hashes the first `start.bytes` of the partial (read with `read`) and checks them against the record:
 * the sha256 state to continue from (and, with `pieceBytes`, the piece hasher's), or PrefixMismatchError.
 * Read errors go through `readError` (the partial is the destination: its errors are the write side's).
 */
export async function verifiedPrefix(
  read: ChunkIo['read'],
  start: { bytes: number; sha256: string },
  describe: string,
  readError: (error: unknown) => unknown,
  pieceBytes?: number,
): Promise<VerifiedStart> {
  const pieces = pieceBytes === undefined ? undefined : new PieceHasher(pieceBytes);
  const hash = await hashPrefix(read, start.bytes, pieces).catch((error: unknown) => {
    throw isReasonError(error) ? error : readError(error);
  });
  if (hash.copy().digest('hex') !== start.sha256)
    throw new PrefixMismatchError(
      `${describe}: the first ${start.bytes} bytes of the partial copy do not have the sha256 its record names`,
    );
  return { bytes: start.bytes, hash, ...(pieces ? { pieces } : {}) };
}

/** A verified prefix to continue from: its first `bytes` went into `hash` (and `pieces`). */
export interface VerifiedStart {
  bytes: number;
  hash: Hash;
  pieces?: PieceHasher;
}

export function fileHandleIo(from: FileHandle, to: FileHandle): ChunkIo {
  return { read: handleRead(from), write: handleWrite(to) };
}

export function handleRead(from: FileHandle): ChunkIo['read'] {
  return (buffer, position) =>
    from.read(buffer, 0, buffer.length, position).then((result) => result.bytesRead);
}

export function handleWrite(to: FileHandle): ChunkIo['write'] {
  return (buffer, offset, length, position) =>
    to.write(buffer, offset, length, position).then((result) => result.bytesWritten);
}

export type CopyChunksOptions = Omit<StreamCopyOptions, 'from' | 'to' | 'start'> & {
  io: ChunkIo;
  /**
   * Continue after a verified prefix: its first `bytes` are in the destination and went into `hash` (and
   * `pieces`, which must be there when `pieceBytes` is).
   */
  start?: VerifiedStart;
  /** The ring's size (default COPY_BUFFERS; at least 2): benches compare sizes. */
  buffers?: number;
};

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
 * Copies and hashes on the way, through a ring of `buffers` fixed buffers of COPY_CHUNK_BYTES: while one
 * chunk is written (on libuv's threads) and hashed (on this thread), the next ones are read ahead into
 * the others. Memory stays flat whatever the size, and nothing is allocated per chunk
 * (fs.createReadStream allocates a fresh buffer for every read).
 */
export async function copyChunks(options: CopyChunksOptions): Promise<StreamCopyResult> {
  const { io, maxBytes, signal, onProgress, readError, writeError, describe, checkpoint, pace } = options;
  throwIfAborted(signal);
  const hash = options.start?.hash ?? createHash('sha256');
  const pieces = pieceHasher(options);
  const ring = Array.from({ length: Math.max(2, options.buffers ?? COPY_BUFFERS) }, () =>
    Buffer.allocUnsafe(COPY_CHUNK_BYTES),
  );
  const read = (buffer: Buffer, position: number): Promise<number> =>
    io
      .read(buffer, position)
      .catch((error: unknown) => {
        throw readError(error);
      })
      .then(async (bytesRead) => {
        if (pace && bytesRead > 0) await pace.afterRead(bytesRead, signal);
        return bytesRead;
      });

  let bytes = options.start?.bytes ?? 0;
  let nextCheckpoint = checkpoint ? bytes + checkpoint.everyBytes : Infinity;
  /** Reads in flight, in file order, each into its own buffer of the ring. */
  const reads: Array<{ slot: number; position: number; done: Promise<number> }> = [];
  let nextSlot = 0;
  let nextPosition = bytes;
  /** Every buffer but the one being written is read into. */
  const readAheadFull = () => {
    while (reads.length < ring.length - 1) {
      reads.push({
        slot: nextSlot,
        position: nextPosition,
        done: readAhead(read(ring[nextSlot]!, nextPosition)),
      });
      nextSlot = (nextSlot + 1) % ring.length;
      nextPosition += COPY_CHUNK_BYTES;
    }
  };
  let writing: Promise<void> | undefined;
  try {
    readAheadFull();
    for (;;) {
      if (writing) {
        // The previous chunk is written (and was hashed): its buffer is free, and the prefix is whole.
        await writing;
        writing = undefined;
        if (checkpoint && bytes >= nextCheckpoint) {
          await checkpoint.save(bytes, hash.copy().digest('hex'));
          nextCheckpoint = bytes + checkpoint.everyBytes;
        }
        onProgress?.(bytes);
        throwIfAborted(signal);
      }
      const head = reads.shift()!;
      const bytesRead = await head.done;
      if (bytesRead === 0) break;
      if (bytesRead < COPY_CHUNK_BYTES) {
        // The end of the file, or a file system that returned less: the reads ahead were for the wrong
        // positions. They settle, and reading goes on right after what this one returned.
        await Promise.all(reads.splice(0).map((r) => r.done.then(ignore, ignore)));
        nextSlot = (head.slot + 1) % ring.length;
        nextPosition = head.position + bytesRead;
      }
      const chunk = ring[head.slot]!.subarray(0, bytesRead);
      const offset = bytes;
      bytes += bytesRead;
      if (maxBytes !== undefined && bytes > maxBytes) {
        throw new ReasonError(
          'SIZE_MISMATCH',
          `${describe}: more than the expected ${maxBytes} bytes arrived`,
        );
      }
      readAheadFull();
      // Both the write and the hash only read `chunk`; its buffer is read into again only after the
      // write has finished (the top of the next round).
      writing = (pace ? pace.beforeWrite(chunk.length, signal) : Promise.resolve())
        .then(() => writeAll(io, chunk, offset))
        .catch((error: unknown) => {
          throw writeError(error);
        });
      writing.catch(ignore); // awaited at the top of the next round, or settled in `finally`
      hash.update(chunk);
      pieces?.update(chunk);
    }
  } finally {
    // Reads and a write still in flight after a failure use our buffers and hold the files: let them
    // settle before the caller closes the files. Their own outcomes no longer matter, the first error is
    // reported.
    await Promise.all([...reads.map((r) => r.done), writing].map((p) => p?.then(ignore, ignore)));
  }
  return withPieces({ bytes, sha256: hash.digest('hex') }, pieces);
}

/** The piece hasher a copy continues (a resumed prefix's) or starts; none without `pieceBytes`. */
function pieceHasher(options: CopyChunksOptions): PieceHasher | undefined {
  if (options.pieceBytes === undefined) return undefined;
  const resumed = options.start?.pieces;
  if (options.start && resumed?.pieceBytes !== options.pieceBytes)
    throw new Error(
      `${options.describe}: a resumed prefix without its pieces of ${options.pieceBytes} bytes`,
    );
  return resumed ?? new PieceHasher(options.pieceBytes);
}

function withPieces(result: StreamCopyResult, pieces: PieceHasher | undefined): StreamCopyResult {
  const digests = pieces?.finish();
  return digests ? { ...result, pieces: digests } : result;
}

export interface ChunkCopyOptions {
  chunks: AsyncIterable<Uint8Array>;
  to: FileHandle;
  maxBytes?: number;
  signal?: AbortSignal;
  onProgress?: (bytesDone: number) => void;
  writeError: (error: unknown) => unknown;
  describe: string;
  /** As StreamCopyOptions.pieceBytes. */
  pieceBytes?: number;
}

/**
 * Writes a stream of chunks (a download) into `to`, hashing on the way. Errors of the stream itself are
 * the producer's to name (an origin's reason codes) and pass through unchanged.
 */
export async function chunkCopy(options: ChunkCopyOptions): Promise<StreamCopyResult> {
  const { chunks, to, maxBytes, signal, onProgress, writeError, describe } = options;
  throwIfAborted(signal);
  const hash = createHash('sha256');
  const pieces = options.pieceBytes === undefined ? undefined : new PieceHasher(options.pieceBytes);
  let bytes = 0;
  for await (const data of chunks) {
    const chunk = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (maxBytes !== undefined && bytes + chunk.length > maxBytes) {
      throw new ReasonError('SIZE_MISMATCH', `${describe}: more than the expected ${maxBytes} bytes arrived`);
    }
    hash.update(chunk);
    pieces?.update(chunk);
    await writeAll({ write: handleWrite(to) }, chunk, bytes).catch((error: unknown) => {
      throw writeError(error);
    });
    bytes += chunk.length;
    onProgress?.(bytes);
    throwIfAborted(signal);
  }
  return withPieces({ bytes, sha256: hash.digest('hex') }, pieces);
}

export async function writeAll(io: Pick<ChunkIo, 'write'>, chunk: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < chunk.length) {
    written += await io.write(chunk, written, chunk.length - written, position + written);
  }
}

/**
 * The sha256 state over the first `bytes` of a file (a partial copy to continue), read with `read`
 * (ChunkIo.read: a file handle on the main thread, a descriptor in a copy worker); `pieces` is fed too.
 */
export async function hashPrefix(read: ChunkIo['read'], bytes: number, pieces?: PieceHasher): Promise<Hash> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(COPY_CHUNK_BYTES);
  let done = 0;
  while (done < bytes) {
    const bytesRead = await read(buffer.subarray(0, Math.min(buffer.length, bytes - done)), done);
    if (bytesRead === 0)
      throw new ReasonError('IO_ERROR', `the partial copy ended at ${done} of ${bytes} bytes`);
    hash.update(buffer.subarray(0, bytesRead));
    pieces?.update(buffer.subarray(0, bytesRead));
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
