import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { ReasonError, errorText, isReasonError } from '@app/contracts';
import {
  COPY_CHUNK_BYTES,
  type StreamCopyOptions,
  type StreamCopyResult,
  type StreamPace,
  abortError,
  handleRead,
  throwIfAborted,
  verifiedPrefix,
} from './image-copier';
import { type PieceList, pieceRange } from './piece-list';
import { createPiecePlan, dropHolder, isComplete, othersReading, pieceDone, takePiece } from './piece-plan';

/** One verified holder a piece copy reads from: its image opened and checked by the caller, under its lock. */
export interface PieceHolder {
  node: string;
  file: FileHandle;
  /** Its read cap (afterRead) and the destination's write cap (beforeWrite, shared by all holders). */
  pace?: StreamPace;
  /** Fires when this holder's shared lock is lost: the holder is dropped, the copy goes on without it. */
  lost?: AbortSignal;
  /** Maps a read error of this holder (its node named in the message). */
  readError: (error: unknown) => unknown;
}

export type PieceCopyOptions = Pick<
  StreamCopyOptions,
  'to' | 'signal' | 'onProgress' | 'writeError' | 'describe' | 'start' | 'checkpoint'
> & {
  holders: PieceHolder[];
  /** The pieces' sha256, from a verified holder's list that matches the image's meta. */
  list: PieceList;
  /** A holder dropped (read failed, lock lost, a piece with another sha256): for the log. */
  onDropped?: (node: string, why: string) => void;
};

/** A failure that ends the whole copy (the destination's, an abort), not only one holder's part. */
class CopyFailure {
  constructor(readonly error: unknown) {}
}

/**
 * Copies an image from several verified holders at once, each reading other pieces (piece-plan.ts decides
 * which) into the same partial copy at their offsets. A piece is written only once its sha256 is the
 * list's; a holder that fails is dropped and its piece read by another. The whole image is then hashed as
 * always, from the partial copy's bytes on disk, front to back as the verified pieces join up (so a
 * checkpoint records a contiguous prefix and its sha256, as a single-source copy's does). Runs on this
 * thread: one piece buffer per holder, one chunk buffer for the read-back.
 */
export async function copyPieces(options: PieceCopyOptions): Promise<StreamCopyResult> {
  const { list, to, signal, describe, checkpoint } = options;
  throwIfAborted(signal);
  const resumed =
    options.start && (await verifiedPrefix(handleRead(to), options.start, describe, options.writeError));
  const hash = resumed?.hash ?? createHash('sha256');
  let hashed = resumed?.bytes ?? 0;
  const plan = createPiecePlan(list.pieces.length, Math.floor(hashed / list.pieceBytes));
  let nextCheckpoint = checkpoint ? hashed + checkpoint.everyBytes : Infinity;
  let failure: CopyFailure | undefined;
  let lastDrop: unknown;

  let wakers: Array<() => void> = [];
  const notify = () => {
    const woken = wakers;
    wakers = [];
    for (const wake of woken) wake();
  };
  const changed = () => new Promise<void>((resolve) => wakers.push(resolve));
  const fail = (error: unknown) => {
    failure ??= new CopyFailure(error);
    notify();
  };
  const onAbort = () => fail(abortError(signal!));
  signal?.addEventListener('abort', onAbort, { once: true });

  // The whole-image hash reads back what was written, front to back, one advance at a time.
  const readBack = Buffer.allocUnsafe(COPY_CHUNK_BYTES);
  const advance = async () => {
    const end = Math.min(list.size, plan.donePrefix * list.pieceBytes);
    while (hashed < end && !failure) {
      const length = Math.min(readBack.length, end - hashed);
      const read = await to.read(readBack, 0, length, hashed).catch((error: unknown) => {
        throw options.writeError(error);
      });
      if (read.bytesRead === 0)
        throw new ReasonError('IO_ERROR', `${describe}: the partial copy ended at ${hashed}`);
      hash.update(readBack.subarray(0, read.bytesRead));
      hashed += read.bytesRead;
      if (checkpoint && hashed >= nextCheckpoint) {
        await checkpoint.save(hashed, hash.copy().digest('hex'));
        nextCheckpoint = hashed + checkpoint.everyBytes;
      }
      options.onProgress?.(hashed);
    }
  };
  let advancing: Promise<void> = Promise.resolve();
  const scheduleAdvance = () => {
    advancing = advancing.then(advance).catch(fail);
  };

  const drop = (holder: PieceHolder, why: string, error: unknown) => {
    dropHolder(plan, holder.node, why);
    lastDrop = error;
    options.onDropped?.(holder.node, why);
    notify();
  };

  const runHolder = async (holder: PieceHolder) => {
    const buffer = Buffer.allocUnsafe(list.pieceBytes);
    const readSignal = AbortSignal.any([signal, holder.lost].filter((s) => s !== undefined));
    for (;;) {
      if (failure) return;
      const index = takePiece(plan, holder.node);
      if (index === undefined) {
        if (plan.dropped.has(holder.node) || isComplete(plan) || !othersReading(plan)) return;
        await changed(); // a piece may come back from a holder that fails
        continue;
      }
      const [start, end] = pieceRange(list, index);
      const piece = buffer.subarray(0, end - start);
      try {
        await readPiece(holder, piece, start, readSignal, describe);
        const sha256 = createHash('sha256').update(piece).digest('hex');
        if (sha256 !== list.pieces[index]) {
          const why = `piece ${index} read from node ${holder.node} has sha256 ${sha256}, its list says ${list.pieces[index]}`;
          drop(
            holder,
            why,
            new ReasonError('CHECKSUM_MISMATCH', `${describe}: ${why}; nothing was published`),
          );
          return;
        }
        await writePiece(holder, piece, start, options);
      } catch (error) {
        if (error instanceof CopyFailure || signal?.aborted) return fail(unwrap(error, signal));
        const mapped = holder.lost?.aborted ? holder.lost.reason : holder.readError(error);
        drop(holder, errorText(mapped), mapped);
        return;
      }
      pieceDone(plan, index);
      notify();
      scheduleAdvance();
    }
  };

  try {
    await Promise.all(options.holders.map(runHolder));
    scheduleAdvance();
    await advancing;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (failure) throw failure.error;
  if (!isComplete(plan) || hashed !== list.size) throw noHolderLeft(lastDrop, describe, plan.dropped);
  return { bytes: hashed, sha256: hash.digest('hex'), pieces: [...list.pieces] };
}

/** Reads one piece whole, chunk by chunk within the holder's read cap. A holder that ends early fails. */
async function readPiece(
  holder: PieceHolder,
  piece: Buffer,
  position: number,
  signal: AbortSignal,
  describe: string,
): Promise<void> {
  let done = 0;
  while (done < piece.length) {
    signal.throwIfAborted();
    const want = Math.min(COPY_CHUNK_BYTES, piece.length - done);
    const { bytesRead } = await holder.file.read(piece, done, want, position + done);
    if (bytesRead === 0)
      throw new ReasonError(
        'SOURCE_MISSING',
        `${describe}: node ${holder.node}'s image ended at ${position + done} bytes`,
      );
    done += bytesRead;
    if (holder.pace) await holder.pace.afterRead(bytesRead, signal);
  }
}

/** Writes a verified piece at its offset, within the destination's write cap. Any failure ends the copy. */
async function writePiece(
  holder: PieceHolder,
  piece: Buffer,
  position: number,
  options: PieceCopyOptions,
): Promise<void> {
  try {
    if (holder.pace) await holder.pace.beforeWrite(piece.length, options.signal);
    let written = 0;
    while (written < piece.length) {
      const result = await options.to.write(piece, written, piece.length - written, position + written);
      written += result.bytesWritten;
    }
  } catch (error) {
    throw new CopyFailure(options.signal?.aborted ? error : options.writeError(error));
  }
}

function unwrap(error: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted) return abortError(signal);
  return error instanceof CopyFailure ? error.error : error;
}

/** Every holder was dropped before the last piece: the reason of the last drop, with the others named. */
function noHolderLeft(last: unknown, describe: string, dropped: ReadonlyMap<string, string>): unknown {
  const all = [...dropped].map(([node, why]) => `node ${node}: ${why}`).join('; ');
  if (isReasonError(last))
    return new ReasonError(last.code, `${last.message} (every holder dropped: ${all})`);
  return new ReasonError('IO_ERROR', `${describe}: every holder dropped before the last piece (${all})`);
}
