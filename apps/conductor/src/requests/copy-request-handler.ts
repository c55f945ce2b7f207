import { type Logger, type CellTopology, ReasonError, errorText } from '@app/contracts';
import { performance } from 'node:perf_hooks';
import { newAttemptId } from '@app/locking';
import { type Delivery, handBackOnFailure, type Publisher, type RetryHeaderSigner } from '@app/messaging';
import type { JobRecords, RequestAnswers } from '@app/image-store';
import type { CancelWatch } from '../jobs/cancel-watch';
import type { JobProgress } from '../jobs/job-progress';
import type { CopyCoordinator } from '../copy/copy-coordinator';
import type { ConductorMetrics } from '../metrics/conductor-metrics';
import type { CacheRootGuard } from '../cache-root/cache-root-guard';
import { type Admitted, admitCopyRequest } from './copy-admission';
import { asFailure } from './copy-results';
import { type CopyOutcome, type Handled, lookups, settle } from './copy-settlement';
import { CopySettler } from './copy-settler';

export interface CopyRequestHandlerDeps {
  coordinator: CopyCoordinator;
  publisher: Publisher;
  topology: CellTopology;
  stats: ConductorMetrics;
  conductorId: string;
  log: Logger;
  /** Aborted when the conductor stops: copies still running are handed back to the queue. */
  shutdown: AbortSignal;
  /** Signs retry copies; only signed x-icc-attempt / x-icc-first-seen headers are believed. */
  signer: RetryHeaderSigner;
  /** Cancel markers: a cancelled request is answered CANCELLED when taken, and aborted while it runs. */
  cancels?: CancelWatch;
  /** The records of pre-cache jobs: a job's copy records its node's outcome before it is acked. */
  jobs?: { records: JobRecords; progress: JobProgress };
  /** The first final answer of each plain request: a re-send, or a cancel after it, cannot change it. */
  answers?: Pick<RequestAnswers, 'record' | 'read'>;
  /** Whether CACHE_ROOT is still the cell's: no failure is answered while it is not (CACHE_UNAVAILABLE). */
  cacheRoot?: Pick<CacheRootGuard, 'check'>;
}

/** Without a CancelWatch (unit specs of other parts): nothing is ever cancelled. */
const NOT_WATCHED = { signal: new AbortController().signal, done: () => undefined };

/**
 * One request message, from delivery to ack: admitted or refused (copy-admission.ts), copied, settled by
 * one pure decision (copy-settlement.ts, the table of every ending) and carried out in one place
 * (copy-settler.ts). Valid requests are copied and answered; retryable failures go to the delayed retry
 * path; permanent ones are answered as failed and dead-lettered with the reason; work interrupted by
 * shutdown is handed back to the queue. Every path ends with the message settled exactly once, and only
 * after what it promises was confirmed by the broker.
 */
export class CopyRequestHandler {
  private readonly settler: CopySettler;

  constructor(private readonly deps: CopyRequestHandlerDeps) {
    this.settler = new CopySettler(deps);
  }

  /** Never throws: a broker failure while answering hands the message back (the copy is idempotent). */
  async handle(delivery: Delivery): Promise<void> {
    await handBackOnFailure(delivery, () => this.process(delivery), {
      log: this.deps.log,
      shutdown: this.deps.shutdown,
      warning: 'could not answer a request; handing it back',
      // The publish failed because the connection died under it (a partition noticed only now): the
      // delivery is gone with its channel, and the broker redelivers it; nothing to hand back.
      droppedWithItsChannel: async (dropped, error) => {
        if (dropped.channelOpen) return false;
        await this.settler.carryOut(dropped, {
          kind: 'dropped-with-channel',
          what: `publish failed: ${errorText(error)}`,
        });
        return true;
      },
      onHandedBack: () => this.deps.stats.recordHandedBack(),
    });
  }

  private async process(delivery: Delivery): Promise<void> {
    const started = performance.now();
    const { signer, topology, shutdown, cacheRoot } = this.deps;
    const admission = await admitCopyRequest(
      delivery,
      { signer, maxAttempts: topology.maxAttempts, jobs: this.deps.jobs?.records },
      new Date(),
    );
    if (admission.ignoredHeaders.length > 0)
      this.settler.untrustedHeaders(delivery, admission.ignoredHeaders);
    const handled: Handled =
      admission.kind === 'refused'
        ? { kind: 'refused', refusal: admission }
        : { ...(await this.copy(admission)), admitted: admission };
    const shuttingDown = shutdown.aborted;
    const looks = lookups(handled, shuttingDown);
    // The folder first, then the channel: on a cut link the mount and the broker go together, and the
    // folder check can take long enough for the conductor to notice its connection is gone. A retry copy
    // published then (on the new connection) would run the request a second time beside its redelivery.
    const cacheRootState = looks.cacheRoot && cacheRoot ? await cacheRoot.check() : undefined;
    const channelOpen = looks.channel ? await channelStillOpen(delivery) : delivery.channelOpen;
    const settlement = settle(handled, {
      maxAttempts: topology.maxAttempts,
      shuttingDown,
      cacheRoot: cacheRootState,
      channelOpen,
      conductorId: this.deps.conductorId,
      now: new Date(),
      handledMs: performance.now() - started,
    });
    await this.settler.carryOut(delivery, settlement);
  }

  /** Runs an admitted request's copy, unless its first final answer exists or it was cancelled. */
  private async copy({ request }: Admitted): Promise<CopyOutcome> {
    const { shutdown, cancels, answers } = this.deps;
    // Watched before the first look at the markers: a cancel written at any moment is seen (cancel-watch.ts).
    const cancel = cancels?.watch(request) ?? NOT_WATCHED;
    try {
      // A request id's first final answer stands: a re-send is answered with it, whatever happened since.
      // A record that cannot be read now is looked for again when the answer is recorded (copy-settler.ts).
      const earlier =
        request.jobId === undefined
          ? await answers?.read(request.requestId).catch(() => undefined)
          : undefined;
      if (earlier) return { kind: 'answered-before', earlier };
      if (await cancels?.isCancelled(request))
        throw new ReasonError('CANCELLED', `request ${request.requestId} was cancelled before it started`);
      const attemptId = `${request.requestId.slice(0, 40).replace(/\./g, '_')}-${newAttemptId()}`;
      const signal = AbortSignal.any([shutdown, cancel.signal]);
      // The checks above await: a shutdown or cancel may have begun meanwhile; start no copy then.
      if (signal.aborted) throw signal.reason;
      const { result, coalesced } = await this.deps.coordinator.run(
        request,
        request.requestId,
        attemptId,
        signal,
      );
      return { kind: 'copied', result, coalesced };
    } catch (caught) {
      // An aborted copy throws whatever the abort looked like where it stopped: the cancel is the cause.
      const error = cancel.signal.aborted && !shutdown.aborted ? cancel.signal.reason : caught;
      const failure = asFailure(error);
      if (failure.code !== 'INTERNAL') return { kind: 'failed', failure };
      return {
        kind: 'failed',
        failure,
        unexpected: { err: errorText(error), stack: (error as Error | undefined)?.stack },
      };
    } finally {
      cancel.done();
    }
  }
}

/**
 * Whether the delivery's channel is still open. A process resumed after a pause runs its overdue timers (a
 * lock watchdog ending the copy) before it reads its sockets: one turn of the event loop lets a broker's
 * close that is waiting there land first.
 */
async function channelStillOpen(delivery: Delivery): Promise<boolean> {
  if (delivery.channelOpen) await new Promise((resolve) => setImmediate(resolve));
  return delivery.channelOpen;
}
