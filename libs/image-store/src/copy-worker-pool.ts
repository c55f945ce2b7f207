import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { errorText, ReasonError } from '@app/contracts';
import type { CopyWorkerAsk, CopyWorkerFailure, FromCopyWorker, ToCopyWorker } from './copy-worker-thread';
import {
  type StreamCopier,
  type StreamCopyOptions,
  type StreamCopyResult,
  PrefixMismatchError,
  abortError,
  throwIfAborted,
} from './image-copier';

export interface CopyWorkerPoolOptions {
  /** Worker threads at most; started on first use, each runs any number of copies. */
  size: number;
  /** The worker's script; tests bring one that crashes. Default: the compiled copy-worker-thread.js. */
  script?: string;
}

interface Job {
  options: StreamCopyOptions;
  resolve: (result: StreamCopyResult) => void;
  reject: (error: unknown) => void;
  /** The first error seen on this side (onProgress threw, the signal fired): it wins over the worker's. */
  failure?: unknown;
  slot: WorkerSlot;
  /**
   * The wait this side is running for the worker (a checkpoint save, a pace), settled or not. The job
   * settles only after it: an abort must not let the caller discard the partial while a checkpoint is
   * still writing its record, or the record lands after the discard and stays as litter.
   */
  waiting?: Promise<unknown>;
}

interface WorkerSlot {
  worker: Worker;
  jobs: Map<number, Job>;
  crash?: string;
}

/**
 * Runs the streaming copies of publishes on worker threads (docs/copies.md, "Copies use every core"): one sha256 stream is
 * sequential, so on the main thread every concurrent copy shares one core, and the conductor's own work
 * (messages, admin requests, lock heartbeats) waits behind the hashing. A copy goes to the least busy
 * worker. The main thread keeps the file handles (opened and checked there); a worker reads and writes
 * their descriptors, so no byte is copied or transferred between threads. Resume, checkpoints and
 * bandwidth caps work as on the main thread: the worker re-hashes a resumed prefix itself, and asks this
 * side to save each checkpoint and to pace each chunk (StreamCopyOptions.checkpoint and .pace run here,
 * the worker waits for the answer). A copy settles only once its
 * worker stopped touching the descriptors, so the caller may close them right after; a worker that dies
 * fails its copies with INTERNAL (nothing is published) and is replaced on the next copy.
 */
export class CopyWorkerPool implements StreamCopier {
  private readonly slots: WorkerSlot[] = [];
  private readonly size: number;
  private script: string | undefined;
  private nextId = 1;
  private closed = false;

  constructor(options: CopyWorkerPoolOptions) {
    if (!Number.isInteger(options.size) || options.size < 1) {
      throw new RangeError(`CopyWorkerPool size: must be a whole number of at least 1, got ${options.size}`);
    }
    this.size = options.size;
    this.script = options.script;
  }

  /** Threads running now (a crashed one is gone until the next copy needs it). */
  get threads(): number {
    return this.slots.length;
  }

  async copy(options: StreamCopyOptions): Promise<StreamCopyResult> {
    throwIfAborted(options.signal);
    if (this.closed) {
      throw new ReasonError('SHUTTING_DOWN', `${options.describe}: the copy workers stopped`);
    }
    const slot = this.pickSlot();
    const id = this.nextId++;
    const { signal } = options;
    return new Promise<StreamCopyResult>((resolve, reject) => {
      const onAbort = () => this.fail(job, id, abortError(signal!));
      const settle =
        <T>(finish: (value: T) => void) =>
        (value: T) => {
          signal?.removeEventListener('abort', onAbort);
          finish(value);
        };
      const job: Job = { options, resolve: settle(resolve), reject: settle(reject), slot };
      slot.jobs.set(id, job);
      slot.worker.ref();
      signal?.addEventListener('abort', onAbort, { once: true });
      const message: ToCopyWorker = {
        type: 'copy',
        id,
        fromFd: options.from.fd,
        toFd: options.to.fd,
        maxBytes: options.maxBytes,
        describe: options.describe,
        ...(options.start ? { start: options.start } : {}),
        ...(options.checkpoint ? { checkpointEveryBytes: options.checkpoint.everyBytes } : {}),
        paced: options.pace !== undefined,
        ...(options.pieceBytes === undefined ? {} : { pieceBytes: options.pieceBytes }),
      };
      slot.worker.postMessage(message);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()));
  }

  /** Records the first error of a job and asks its worker to stop; the job settles when the worker has. */
  private fail(job: Job, id: number, error: unknown): void {
    if (job.failure !== undefined) return;
    job.failure = error;
    const message: ToCopyWorker = { type: 'abort', id };
    job.slot.worker.postMessage(message);
  }

  private pickSlot(): WorkerSlot {
    const idle = this.slots.find((slot) => slot.jobs.size === 0);
    if (idle) return idle;
    if (this.slots.length < this.size) return this.spawn();
    return this.slots.reduce((a, b) => (b.jobs.size < a.jobs.size ? b : a));
  }

  private spawn(): WorkerSlot {
    this.script ??= defaultScript();
    const slot: WorkerSlot = { worker: new Worker(this.script), jobs: new Map() };
    slot.worker.unref();
    slot.worker.on('message', (message: FromCopyWorker) => this.onMessage(slot, message));
    slot.worker.on('error', (error) => {
      slot.crash = errorText(error);
    });
    // 'exit' comes after the thread has stopped, its file operations included: only then may the
    // caller close the descriptors.
    slot.worker.on('exit', (exitCode) => {
      this.slots.splice(this.slots.indexOf(slot), 1);
      const why = slot.crash ?? `exit code ${exitCode}`;
      for (const job of slot.jobs.values()) {
        const error =
          job.failure ??
          (this.closed
            ? new ReasonError('SHUTTING_DOWN', `${job.options.describe}: the copy workers stopped`)
            : new ReasonError(
                'INTERNAL',
                `${job.options.describe}: the copy worker thread died (${why}); nothing was published`,
              ));
        afterWaiting(job, () => job.reject(error));
      }
      slot.jobs.clear();
    });
    this.slots.push(slot);
    return slot;
  }

  private onMessage(slot: WorkerSlot, message: FromCopyWorker): void {
    const job = slot.jobs.get(message.id);
    if (!job) return;
    if (message.type === 'progress') {
      if (job.failure !== undefined) return;
      try {
        job.options.onProgress?.(message.bytes);
      } catch (error) {
        this.fail(job, message.id, error);
      }
      return;
    }
    if (message.type === 'ask') {
      this.answer(job, slot, message);
      return;
    }
    slot.jobs.delete(message.id);
    if (slot.jobs.size === 0) slot.worker.unref();
    afterWaiting(job, () => {
      if (job.failure !== undefined) job.reject(job.failure);
      else if (message.type === 'done')
        job.resolve({
          bytes: message.bytes,
          sha256: message.sha256,
          ...(message.pieces ? { pieces: message.pieces } : {}),
        });
      else job.reject(this.rebuild(job, message.failure));
    });
  }

  /** Runs the wait a worker asked for; the worker's copy goes on once it is answered. */
  private answer(job: Job, slot: WorkerSlot, message: CopyWorkerAsk & { id: number; ask: number }): void {
    if (job.failure !== undefined) return; // the abort is on its way: it ends the worker's wait
    const { checkpoint, pace, signal } = job.options;
    let waiting: Promise<void>;
    try {
      if (message.wait === 'checkpoint') {
        if (!checkpoint) throw new Error('a checkpoint was asked for a copy without checkpoints');
        waiting = checkpoint.save(message.bytes, message.sha256);
      } else {
        if (!pace) throw new Error('a pace was asked for a copy without bandwidth caps');
        waiting = pace[message.wait](message.bytes, signal);
      }
    } catch (error) {
      waiting = Promise.reject(error);
    }
    job.waiting = waiting.catch(() => undefined);
    waiting.then(
      () => {
        if (job.failure !== undefined || slot.jobs.get(message.id) !== job) return;
        const reply: ToCopyWorker = { type: 'answer', id: message.id, ask: message.ask };
        slot.worker.postMessage(reply);
      },
      (error: unknown) => this.fail(job, message.id, error),
    );
  }

  private rebuild(job: Job, failure: CopyWorkerFailure): unknown {
    const { options } = job;
    switch (failure.kind) {
      case 'aborted':
        return options.signal ? abortError(options.signal) : new ReasonError('INTERNAL', 'copy aborted');
      case 'conductor':
        return new ReasonError(failure.code, failure.message);
      case 'prefix-mismatch':
        return new PrefixMismatchError(failure.message);
      case 'read':
      case 'write': {
        const error = Object.assign(new Error(failure.message), {
          code: failure.code,
          errno: failure.errno,
          syscall: failure.syscall,
        });
        return failure.kind === 'read' ? options.readError(error) : options.writeError(error);
      }
      case 'other':
        return new ReasonError('INTERNAL', `${options.describe}: the copy worker failed: ${failure.message}`);
    }
  }
}

/** Runs `settle` once this side's wait for the job (Job.waiting) has settled, at once if there is none. */
function afterWaiting(job: Job, settle: () => void): void {
  if (job.waiting) void job.waiting.then(settle);
  else settle();
}

function defaultScript(): string {
  const beside = path.join(__dirname, 'copy-worker-thread.js');
  if (existsSync(beside)) return beside;
  // Specs run this file from its TypeScript source; a worker needs the compiled script (npm run build).
  const built = path.resolve(__dirname, '../../../dist/libs/image-store/src/copy-worker-thread.js');
  if (existsSync(built)) return built;
  throw new ReasonError(
    'INTERNAL',
    `the copy worker script is missing (neither ${beside} nor ${built}): run npm run build`,
  );
}
