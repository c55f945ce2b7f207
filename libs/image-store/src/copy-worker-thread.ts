import * as fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { type ReasonCode, isReasonError } from '@app/contracts';
import {
  type ChunkIo,
  type CopyChunksOptions,
  PrefixMismatchError,
  abortError,
  copyChunks,
  verifiedPrefix,
} from './image-copier';

/*
 * The code of one copy worker thread (started by CopyWorkerPool): it runs the copy loop of a publish on
 * file descriptors the main thread opened and checked, so reading, writing and above all hashing happen
 * here. No byte crosses the thread boundary; only progress counts, the digests (the whole image's and
 * its pieces') and the waits do. A resumed
 * copy re-hashes its prefix here from the partial file (a node Hash cannot cross threads) and checks it
 * against the digest the main thread verified. Checkpoints and bandwidth caps stay on the main thread:
 * the loop asks it (an `ask`) and goes on only once it answered, as the main thread's loop awaits them.
 */

export type ToCopyWorker =
  | {
      type: 'copy';
      id: number;
      fromFd: number;
      toFd: number;
      maxBytes?: number;
      describe: string;
      /** A resumed copy: the first `bytes` of `toFd` are there already, with this sha256. */
      start?: { bytes: number; sha256: string };
      /** Ask 'checkpoint' each time this many more bytes were written. */
      checkpointEveryBytes?: number;
      /** Ask 'afterRead' and 'beforeWrite' for each chunk (the main thread's bandwidth caps). */
      paced: boolean;
      /** Hash each piece of this many bytes too (StreamCopyOptions.pieceBytes). */
      pieceBytes?: number;
    }
  | { type: 'abort'; id: number }
  /** The main thread's wait for ask `ask` of copy `id` is over. */
  | { type: 'answer'; id: number; ask: number };

/** A wait the main thread runs for a worker's copy: a bandwidth cap, or saving a checkpoint. */
export type CopyWorkerAsk =
  | { wait: 'afterRead' | 'beforeWrite'; bytes: number }
  | { wait: 'checkpoint'; bytes: number; sha256: string };

export type CopyWorkerFailure =
  | { kind: 'read' | 'write'; message: string; code?: string; errno?: number; syscall?: string }
  | { kind: 'conductor'; code: ReasonCode; message: string }
  | { kind: 'aborted' }
  | { kind: 'prefix-mismatch'; message: string }
  | { kind: 'other'; message: string };

export type FromCopyWorker =
  | { type: 'progress'; id: number; bytes: number }
  | ({ type: 'ask'; id: number; ask: number } & CopyWorkerAsk)
  | { type: 'done'; id: number; bytes: number; sha256: string; pieces?: string[] }
  | { type: 'failed'; id: number; failure: CopyWorkerFailure };

/** Marks which end an errno error came from; the main thread maps it (the mapping needs its context). */
class SideError {
  constructor(
    readonly kind: 'read' | 'write',
    readonly error: unknown,
  ) {}
}

function fdReader(fd: number): ChunkIo['read'] {
  return (buffer, position) =>
    new Promise((resolve, reject) =>
      fs.read(fd, buffer, 0, buffer.length, position, (error, bytesRead) =>
        error ? reject(error) : resolve(bytesRead),
      ),
    );
}

function fdIo(fromFd: number, toFd: number): ChunkIo {
  return {
    read: fdReader(fromFd),
    write: (buffer, offset, length, position) =>
      new Promise((resolve, reject) =>
        fs.write(toFd, buffer, offset, length, position, (error, bytesWritten) =>
          error ? reject(error) : resolve(bytesWritten),
        ),
      ),
  };
}

function describeFailure(error: unknown, aborted: boolean): CopyWorkerFailure {
  if (aborted) return { kind: 'aborted' };
  if (error instanceof SideError) {
    const cause = error.error as NodeJS.ErrnoException;
    return {
      kind: error.kind,
      message: cause instanceof Error ? cause.message : String(cause),
      code: cause?.code,
      errno: cause?.errno,
      syscall: cause?.syscall,
    };
  }
  if (error instanceof PrefixMismatchError) return { kind: 'prefix-mismatch', message: error.message };
  if (isReasonError(error)) return { kind: 'conductor', code: error.code, message: error.message };
  return { kind: 'other', message: error instanceof Error ? (error.stack ?? error.message) : String(error) };
}

/** One copy running in this worker: its abort, and its asks the main thread has not answered yet. */
class RunningCopy {
  readonly controller = new AbortController();
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: unknown) => void }>();
  private nextAsk = 1;

  constructor(
    private readonly id: number,
    readonly send: (message: FromCopyWorker) => void,
  ) {
    this.controller.signal.addEventListener('abort', () => {
      for (const { reject } of this.waiting.values()) reject(abortError(this.controller.signal));
      this.waiting.clear();
    });
  }

  ask(question: CopyWorkerAsk): Promise<void> {
    const { signal } = this.controller;
    if (signal.aborted) return Promise.reject(abortError(signal));
    const ask = this.nextAsk++;
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(ask, { resolve, reject });
      this.send({ type: 'ask', id: this.id, ask, ...question });
    });
  }

  answered(ask: number): void {
    this.waiting.get(ask)?.resolve();
    this.waiting.delete(ask);
  }
}

async function runCopy(message: Extract<ToCopyWorker, { type: 'copy' }>, copy: RunningCopy) {
  const { id, start, checkpointEveryBytes, paced, pieceBytes } = message;
  const io = fdIo(message.fromFd, message.toFd);
  const options: CopyChunksOptions = {
    io,
    maxBytes: message.maxBytes,
    signal: copy.controller.signal,
    onProgress: (bytes) => copy.send({ type: 'progress', id, bytes }),
    readError: (error) => new SideError('read', error),
    writeError: (error) => new SideError('write', error),
    describe: message.describe,
    ...(pieceBytes === undefined ? {} : { pieceBytes }),
  };
  // The prefix is read back from the partial (the destination): its errors are the write side's.
  if (start)
    options.start = await verifiedPrefix(
      fdReader(message.toFd),
      start,
      message.describe,
      (error) => new SideError('write', error),
      pieceBytes,
    );
  if (checkpointEveryBytes !== undefined) {
    options.checkpoint = {
      everyBytes: checkpointEveryBytes,
      save: (bytes, sha256) => copy.ask({ wait: 'checkpoint', bytes, sha256 }),
    };
  }
  if (paced) {
    options.pace = {
      afterRead: (bytes) => copy.ask({ wait: 'afterRead', bytes }),
      beforeWrite: (bytes) => copy.ask({ wait: 'beforeWrite', bytes }),
    };
  }
  return copyChunks(options);
}

function serve(port: NonNullable<typeof parentPort>): void {
  const running = new Map<number, RunningCopy>();
  const send = (message: FromCopyWorker) => port.postMessage(message);
  port.on('message', (message: ToCopyWorker) => {
    if (message.type === 'abort') {
      running.get(message.id)?.controller.abort();
      return;
    }
    if (message.type === 'answer') {
      running.get(message.id)?.answered(message.ask);
      return;
    }
    const { id } = message;
    const copy = new RunningCopy(id, send);
    running.set(id, copy);
    runCopy(message, copy).then(
      ({ bytes, sha256, pieces }) => {
        running.delete(id);
        send({ type: 'done', id, bytes, sha256, ...(pieces ? { pieces } : {}) });
      },
      (error: unknown) => {
        running.delete(id);
        send({ type: 'failed', id, failure: describeFailure(error, copy.controller.signal.aborted) });
      },
    );
  });
}

if (parentPort) serve(parentPort);
