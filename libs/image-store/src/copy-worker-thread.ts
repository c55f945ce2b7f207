import * as fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { type ReasonCode, isConductorError } from '@app/contracts';
import { type ChunkIo, copyChunks } from './image-copier';

/*
 * The code of one copy worker thread (started by CopyWorkerPool): it runs the copy loop of a publish on
 * file descriptors the main thread opened and checked, so reading, writing and above all hashing happen
 * here. No byte crosses the thread boundary; only progress counts and the final digest do.
 */

export type ToCopyWorker =
  | { type: 'copy'; id: number; fromFd: number; toFd: number; maxBytes?: number; describe: string }
  | { type: 'abort'; id: number };

export type CopyWorkerFailure =
  | { kind: 'read' | 'write'; message: string; code?: string; errno?: number; syscall?: string }
  | { kind: 'conductor'; code: ReasonCode; message: string }
  | { kind: 'aborted' }
  | { kind: 'other'; message: string };

export type FromCopyWorker =
  | { type: 'progress'; id: number; bytes: number }
  | { type: 'done'; id: number; bytes: number; sha256: string }
  | { type: 'failed'; id: number; failure: CopyWorkerFailure };

/** Marks which end an errno error came from; the main thread maps it (the mapping needs its context). */
class SideError {
  constructor(
    readonly kind: 'read' | 'write',
    readonly error: unknown,
  ) {}
}

function fdIo(fromFd: number, toFd: number): ChunkIo {
  return {
    read: (buffer, position) =>
      new Promise((resolve, reject) =>
        fs.read(fromFd, buffer, 0, buffer.length, position, (error, bytesRead) =>
          error ? reject(error) : resolve(bytesRead),
        ),
      ),
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
  if (isConductorError(error)) return { kind: 'conductor', code: error.code, message: error.message };
  return { kind: 'other', message: error instanceof Error ? (error.stack ?? error.message) : String(error) };
}

function serve(port: NonNullable<typeof parentPort>): void {
  const running = new Map<number, AbortController>();
  const send = (message: FromCopyWorker) => port.postMessage(message);
  port.on('message', (message: ToCopyWorker) => {
    if (message.type === 'abort') {
      running.get(message.id)?.abort();
      return;
    }
    const { id } = message;
    const controller = new AbortController();
    running.set(id, controller);
    copyChunks({
      io: fdIo(message.fromFd, message.toFd),
      maxBytes: message.maxBytes,
      signal: controller.signal,
      onProgress: (bytes) => send({ type: 'progress', id, bytes }),
      readError: (error) => new SideError('read', error),
      writeError: (error) => new SideError('write', error),
      describe: message.describe,
    }).then(
      ({ bytes, sha256 }) => {
        running.delete(id);
        send({ type: 'done', id, bytes, sha256 });
      },
      (error: unknown) => {
        running.delete(id);
        send({ type: 'failed', id, failure: describeFailure(error, controller.signal.aborted) });
      },
    );
  });
}

if (parentPort) serve(parentPort);
