import {
  ReasonError,
  HEADER_ATTEMPT,
  HEADER_FIRST_SEEN,
  HEADER_SIGNATURE,
  cellTopology,
  type ReasonCode,
} from '@app/contracts';
import { RetryHeaderSigner } from '@app/messaging';
import type { CopyCoordinator } from '../copy/copy-coordinator';
import type { CopyJobResult } from '../copy/copy-job';
import { ConductorMetrics } from '../metrics/conductor-metrics';
import { CopyRequestHandler } from './copy-request-handler';
import { FakePublisher, type SentMessage, consumeMessage } from '../../../../test/support/amqp-fakes';
import { recordingLogger } from '../../../../test/support/recording-logger';

/** The copy request handler over fakes, shared by its specs (copy-request-handler*.spec.ts). */
export const topology = cellTopology('spec-cell', { maxAttempts: 3 });
export const signer = new RetryHeaderSigner(Buffer.alloc(32, 7), 'spec-cell');
export const REQUEST = { v: 1, requestId: 'req-1', imageId: 'img-1', destination: 'node-b' };
export const COMPLETED: CopyJobResult = {
  status: 'completed',
  source: 'node-a',
  bytes: 42,
  sha256: 'f'.repeat(64),
};

export type Outcome = { result: CopyJobResult; coalesced: boolean };

/** One handler over fakes; `copy` plays the coordinator (what the lock + copy composition returns). */
export function handlerWith(
  copy: (signal: AbortSignal) => Promise<Outcome>,
  extra: Partial<ConstructorParameters<typeof CopyRequestHandler>[0]> = {},
) {
  const publisher = new FakePublisher();
  const stats = new ConductorMetrics();
  const log = recordingLogger();
  const shutdown = new AbortController();
  const runs: string[] = [];
  const coordinator = {
    run: (job: { requestId?: string }, requestId: string, _attemptId: string, signal: AbortSignal) => {
      runs.push(requestId);
      return copy(signal);
    },
  } as unknown as CopyCoordinator;
  const handler = new CopyRequestHandler({
    coordinator,
    publisher: publisher.asPublisher,
    topology,
    stats,
    conductorId: 'conductor-1',
    log,
    shutdown: shutdown.signal,
    signer,
    ...extra,
  });
  return { handler, publisher, stats, log, shutdown, runs };
}

export function request(
  body: object | Buffer = REQUEST,
  properties: Parameters<typeof consumeMessage>[1] = {},
): ReturnType<typeof consumeMessage> {
  return consumeMessage(body, {
    messageId: 'req-1',
    replyTo: 'amq.gen-reply',
    correlationId: 'corr-1',
    contentType: 'application/json',
    ...properties,
  });
}

export const fails = (code: ReasonCode) => () => Promise.reject(new ReasonError(code, `${code} in the spec`));
export const body = (m: SentMessage) => m.body as Record<string, unknown>;
export const headers = (m: SentMessage) => m.properties.headers ?? {};

/** A message as a retry copy of attempt `attempt` carries it, signed by this cell. */
export function signedRetry(attempt: number) {
  const firstSeen = '2026-01-01T00:00:00.000Z';
  const unsigned = request();
  const signature = signer.sign(unsigned, attempt, firstSeen);
  return request(REQUEST, {
    headers: { [HEADER_ATTEMPT]: attempt, [HEADER_FIRST_SEEN]: firstSeen, [HEADER_SIGNATURE]: signature },
  });
}
