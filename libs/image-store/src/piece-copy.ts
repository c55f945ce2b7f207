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
import { lookForPieces } from './swarm-look';
import {
  type PieceChoice,
  createPiecePlan,
  dropHolder,
  isComplete,
  markReading,
  pieceDone,
} from './piece-plan';
import { type PieceTurn, pieceTurn } from './piece-turn';

/**
 * One holder a piece copy reads from: a verified image opened and checked by the caller under its lock
 * (`file`), or a copy in progress (`partial`: swarm-holders.ts), whose pieces are as untrusted as any.
 */
export interface PieceHolder {
  node: string;
  file?: FileHandle;
  partial?: PartialHolder;
  /** Its read cap (afterRead) and the destination's write cap (beforeWrite, shared by all holders). */
  pace?: StreamPace;
  /** Fires when this holder's shared lock is lost: the holder is dropped, the copy goes on without it. */
  lost?: AbortSignal;
  /** Maps a read error of this holder (its node named in the message). */
  readError: (error: unknown) => unknown;
}

/** A copy in progress as a holder: what it has verified, its record re-read, its file opened per piece. */
export interface PartialHolder {
  has: (index: number) => boolean;
  /** Re-reads its record: false once it is gone (its copy ended) or no longer one to read from. */
  refresh: () => Promise<boolean>;
  /** Runs `use` on the partial opened for reading, closed right after. */
  withFile: <T>(use: (file: FileHandle) => Promise<T>) => Promise<T>;
}

/** A copy that also reads from copies in progress and tells others what it has (swarm-holders.ts). */
export interface SwarmOptions {
  choice: Omit<PieceChoice, 'has' | 'skip'>;
  /** Whether another copy is reading piece `index` now (from anywhere): a verified source leaves it. */
  readingElsewhere?: (index: number) => boolean;
  /** Copies in progress found since the last call, to read from too; called every `everyMs` until done. */
  discover: (wanted?: (index: number) => boolean) => Promise<PieceHolder[]>;
  everyMs: number;
  /** A read slot on a holder's node, per piece (NODE_READ_LIMIT): undefined when none is free now. */
  tryReadSlot?: (node: string) => (() => void) | undefined;
  /** Resolves when a read slot of `node` may have come free. */
  slotFreed?: (node: string) => Promise<void>;
  /**
   * The rate a read from `node` gets: its read cap shared with the reads it serves (0: no cap), a new read
   * counted (`reading` false) or one in flight now (true); and the destination's write cap (0: none).
   * Another read starts only while the reads in flight, at their rates now, add up to less than the write
   * cap (chooseFetch's rule): more would only slow every one of them down while holding their holders'
   * slots. Rates now, not as they were when each read started: a read that began alone at a holder slows
   * down as the holder takes on readers, and counted at its first rate it kept its copy "full" at a
   * fraction of its write cap.
   */
  expectedRate?: (node: string, reading?: boolean) => number;
  writeBps?: number;
  /**
   * A piece verified and written in the partial (resumed ones included), with the holder it was read from
   * (none for a resumed one; `inProgress`: a copy in progress, or the image it published meanwhile).
   */
  onPieceWritten: (index: number, from?: { node: string; inProgress: boolean }) => void;
  /** A piece is being read now (true), or no longer (false: written, or its read failed). */
  onReading?: (index: number, reading: boolean) => void;
}
export type PieceCopyOptions = Pick<
  StreamCopyOptions,
  'to' | 'signal' | 'onProgress' | 'writeError' | 'describe' | 'start' | 'checkpoint'
> & {
  holders: PieceHolder[];
  /** The pieces' sha256, from a verified holder's list that matches the image's meta. */
  list: PieceList;
  /** A holder dropped (read failed, lock lost, a piece with another sha256): for the log. */
  /** `routine`: a copy in progress that ended (its record gone), not a holder that failed. */
  onDropped?: (node: string, why: string, routine?: boolean) => void;
  swarm?: SwarmOptions;
};

/** A failure that ends the whole copy (the destination's, an abort), not only one holder's part. */
class CopyFailure {
  constructor(readonly error: unknown) {}
}

/**
 * Copies an image from several holders at once, each reading other pieces (piece-plan.ts decides which)
 * into the same partial copy at their offsets. A piece is written only once its sha256 is the list's; a
 * holder that fails is dropped and its piece read by another. With `swarm`, holders also come from copies
 * in progress found while copying, pieces are chosen rarest first, and each piece written is announced.
 * The whole image is then hashed as always, from the partial copy's bytes on disk, front to back as the
 * verified pieces join up (so a checkpoint records a contiguous prefix and its sha256, as a single-source
 * copy's does). Runs on this thread: one piece buffer per read in flight, one chunk buffer for the read-back.
 */
export async function copyPieces(options: PieceCopyOptions): Promise<StreamCopyResult> {
  const { list, to, signal, describe, checkpoint, swarm } = options;
  throwIfAborted(signal);
  const resumed =
    options.start && (await verifiedPrefix(handleRead(to), options.start, describe, options.writeError));
  const hash = resumed?.hash ?? createHash('sha256');
  let hashed = resumed?.bytes ?? 0;
  const plan = createPiecePlan(list.pieces.length, Math.floor(hashed / list.pieceBytes));
  for (let i = 0; i < plan.donePrefix; i++) swarm?.onPieceWritten(i);
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

  const drop = (holder: PieceHolder, why: string, error: unknown, routine = false) => {
    dropHolder(plan, holder.node, why);
    if (error !== undefined) lastDrop = error;
    options.onDropped?.(holder.node, why, routine);
    notify();
  };

  const spareBuffers: Buffer[] = [];
  // The holders' nodes of the reads in flight (one entry per read), counted at their rates now.
  const inFlight: string[] = [];
  // The rate the last piece read from each holder got, in bytes per second (see inFlightRate).
  const achieved = new Map<string, number>();
  const inFlightNow = () => ({
    count: inFlight.length,
    sum: inFlight.reduce(
      (sum, node) => sum + inFlightRate(swarm?.expectedRate?.(node, true), achieved.get(node)),
      0,
    ),
  });
  // Copies in progress this copy reads from, for the look that re-reads their records.
  const partials: PieceHolder[] = [];
  // What a verified holder leaves to the copies in progress, and when it gives anything (piece-turn.ts).
  // Starved: nothing read for a whole look's time (the copies in progress it reads from had nothing for it).
  let lastReadEnded = Date.now();
  const heldByPartial = (index: number) =>
    partials.some((h) => !plan.dropped.has(h.node) && h.partial!.has(index));
  const seedOnly = (index: number) => heldByPartial(index) || (swarm?.readingElsewhere?.(index) ?? false);
  const turn = (holder: PieceHolder, slotHeld: boolean): PieceTurn =>
    pieceTurn({
      plan,
      holder,
      failed: failure !== undefined,
      inFlight: inFlightNow(),
      slotHeld,
      ...(swarm && {
        swarm: {
          choice: swarm.choice,
          seedOnly,
          perPieceSlots: swarm.tryReadSlot !== undefined,
          expectedRate: swarm.expectedRate?.(holder.node) ?? 0,
          writeBps: swarm.writeBps ?? 0,
          starved: Date.now() - lastReadEnded >= swarm.everyMs,
        },
      }),
    });

  /**
   * Reads piece `index` from `holder` into `piece`, checks its sha256 and writes it at `start`. False: the
   * holder was dropped (or the copy failed) and this holder's loop ends.
   */
  const movePiece = async (
    holder: PieceHolder,
    index: number,
    piece: Buffer,
    start: number,
    slot: () => void,
    readSignal: AbortSignal,
  ): Promise<boolean> => {
    const startedAt = performance.now();
    try {
      try {
        await (holder.partial
          ? holder.partial.withFile((file) => readPiece(holder, file, piece, start, readSignal, describe))
          : readPiece(holder, holder.file!, piece, start, readSignal, describe));
        achieved.set(holder.node, (piece.length * 1000) / Math.max(1, performance.now() - startedAt));
      } finally {
        slot();
        inFlight.splice(inFlight.indexOf(holder.node), 1);
        lastReadEnded = Date.now();
        notify();
      }
      const sha256 = createHash('sha256').update(piece).digest('hex');
      if (sha256 !== list.pieces[index]) {
        const why = `piece ${index} read from node ${holder.node}${holder.partial ? "'s copy in progress" : ''} has sha256 ${sha256}, its list says ${list.pieces[index]}`;
        drop(holder, why, new ReasonError('CHECKSUM_MISMATCH', `${describe}: ${why}; nothing was published`));
        swarm?.onReading?.(index, false);
        return false;
      }
      await writePiece(holder, piece, start, options);
      return true;
    } catch (error) {
      swarm?.onReading?.(index, false);
      if (error instanceof CopyFailure || signal?.aborted) {
        fail(unwrap(error, signal));
        return false;
      }
      const mapped = holder.lost?.aborted ? holder.lost.reason : holder.readError(error);
      drop(holder, errorText(mapped), mapped);
      return false;
    }
  };

  const runHolder = async (holder: PieceHolder) => {
    const readSignal = AbortSignal.any([signal, holder.lost].filter((s) => s !== undefined));
    for (;;) {
      let next = turn(holder, false);
      let slot = () => undefined as void;
      if (next.kind === 'take-slot') {
        const taken = swarm!.tryReadSlot!(holder.node);
        if (!taken) {
          await Promise.race([changed(), swarm!.slotFreed?.(holder.node) ?? changed()]);
          continue;
        }
        slot = taken;
        next = turn(holder, true);
      }
      if (next.kind !== 'read') slot();
      if (next.kind === 'stop') return;
      if (next.kind !== 'read') {
        // A swarm copy waits for the look below, which re-reads what the copies in progress have; or for
        // a read in flight to end (room for another, or a piece back from a holder that failed).
        await changed();
        continue;
      }
      const index = next.index;
      markReading(plan, index, holder.node);
      inFlight.push(holder.node);
      swarm?.onReading?.(index, true);
      const [start, end] = pieceRange(list, index);
      // One buffer per piece in flight, not per holder: a copy may have many holders, few reading at once.
      // Buffers are reused within the copy: a fresh one per piece is garbage that kept a fan-out's thread
      // in the collector (16% of its time with 64 copies in one process).
      const buffer = spareBuffers.pop() ?? Buffer.allocUnsafe(list.pieceBytes);
      const written = await movePiece(
        holder,
        index,
        buffer.subarray(0, end - start),
        start,
        slot,
        readSignal,
      );
      spareBuffers.push(buffer); // movePiece never throws, and leaves no read or write of it in flight
      if (!written) return;
      pieceDone(plan, index);
      swarm?.onReading?.(index, false);
      swarm?.onPieceWritten(index, { node: holder.node, inProgress: holder.partial !== undefined });
      notify();
      scheduleAdvance();
    }
  };

  const running = new Set<Promise<void>>();
  let holdersRunning = 0;
  const start = (holder: PieceHolder) => {
    holdersRunning++;
    const run = runHolder(holder).finally(() => {
      holdersRunning--;
      running.delete(run);
      notify();
    });
    running.add(run);
  };
  try {
    // A swarm copy looks for copies in progress before its first read: what they have, its source keeps.
    const found = swarm ? await swarm.discover().catch(() => [] as PieceHolder[]) : [];
    partials.push(...found.filter((h) => h.partial));
    [...options.holders, ...found].forEach(start);
    if (swarm) {
      const known = new Set([...options.holders, ...found].map((h) => h.node));
      const look = lookForPieces(swarm, known, partials, {
        active: () => !failure && !isComplete(plan) && holdersRunning > 0,
        start,
        // A copy in progress that ended: the normal course of a fan-out, not a fault.
        drop: (holder) => drop(holder, 'its copy ended, or its record is gone or stale', undefined, true),
        dropped: (node) => plan.dropped.has(node),
        changed: notify,
        finished: changed,
        // End game: missing pieces none of the copies in progress it reads from holds.
        wanted: (index) => plan.status[index] === 'missing' && !heldByPartial(index),
      });
      running.add(look);
      void look.finally(() => running.delete(look));
    }
    while (running.size > 0) await Promise.race(running);
    scheduleAdvance();
    await advancing;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (failure) throw failure.error;
  if (!isComplete(plan) || hashed !== list.size) throw noHolderLeft(lastDrop, describe, plan.dropped);
  return { bytes: hashed, sha256: hash.digest('hex'), pieces: [...list.pieces] };
}

/**
 * The rate a read in flight from a holder is counted at: its share of the holder's cap as this conductor
 * counts it (`computed`), or the rate the last piece read from that holder got when that was lower. The
 * computed share knows only this conductor's reads: a holder that copies in other conductors read from
 * too serves each read a fraction of it, and a copy that counted its reads at their computed shares left
 * most of its write cap unused (four conductors in bench:fanout, bench/RESULTS.md). The rate measured
 * takes in every reader of the holder, whoever runs it, and the destination's own write cap.
 */
function inFlightRate(computed: number | undefined, lastAchieved: number | undefined): number {
  if (computed === undefined || computed <= 0) return 0;
  return lastAchieved === undefined ? computed : Math.min(computed, lastAchieved);
}

/**
 * Reads one piece whole, chunk by chunk within the holder's read cap and the destination's write cap. A
 * holder that ends early fails.
 */
async function readPiece(
  holder: PieceHolder,
  file: FileHandle,
  piece: Buffer,
  position: number,
  signal: AbortSignal,
  describe: string,
): Promise<void> {
  let done = 0;
  while (done < piece.length) {
    signal.throwIfAborted();
    const want = Math.min(COPY_CHUNK_BYTES, piece.length - done);
    // The destination's write allowance is taken as the bytes arrive, as in a single-source copy whose
    // reads and writes overlap: a piece moves at the lower of the two caps, not at their sum of times.
    if (holder.pace) await holder.pace.beforeWrite(want, signal);
    const { bytesRead } = await file.read(piece, done, want, position + done);
    if (bytesRead === 0)
      throw new ReasonError(
        'SOURCE_MISSING',
        `${describe}: node ${holder.node}'s image ended at ${position + done} bytes`,
      );
    done += bytesRead;
    if (holder.pace) await holder.pace.afterRead(bytesRead, signal);
  }
}

/** Writes a verified piece at its offset (its write allowance was taken as it was read). Any failure ends the copy. */
async function writePiece(
  holder: PieceHolder,
  piece: Buffer,
  position: number,
  options: PieceCopyOptions,
): Promise<void> {
  try {
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
