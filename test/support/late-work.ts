import { expect } from 'vitest';
import type { CellTopology } from '@app/contracts';
import type { HeldLock, NodeLockManager } from '@app/locking';
import type { AdminHttp } from './admin-http';
import type { LogLine } from './conductor-process';
import type { RawAmqpClient } from './raw-amqp-client';

/**
 * The set-up and the oracle shared by the late-work tests (test/conductor-late-work on one machine,
 * test/hosts-partition-late on the multi-host bed): a conductor holds requests waiting for destination
 * locks the test holds when it loses its broker connection; another conductor answers the redeliveries;
 * the first one's work must then be dropped quietly.
 */

/** The start of the log line of work dropped with its delivery's channel (copy-settler.ts). */
export const DROPPED = 'the delivery died with its channel';
export const LATE_IMAGES = ['img-1.raw', 'img-2.raw'];

export interface LateRequest {
  requestId: string;
  correlationId: string;
}

/** The requests of `ids` that the conductor behind `admin` has in flight waiting for their locks. */
export async function waitingForLocks(admin: AdminHttp, ids: string[]): Promise<boolean> {
  const { inFlight } = await admin.json<{ inFlight: { requestIds: string[]; phase: string }[] }>('/status');
  const waiting = inFlight.filter((f) => f.phase === 'waiting-for-lock').flatMap((f) => f.requestIds);
  return ids.every((id) => waiting.includes(id));
}

/** Exclusive locks on each image's destination, so the requests for them wait. */
export async function holdDestinations(
  locks: NodeLockManager,
  node: string,
  images = LATE_IMAGES,
): Promise<Map<string, HeldLock>> {
  const held = new Map<string, HeldLock>();
  for (const imageId of images)
    held.set(imageId, await locks.acquire({ node, imageId, mode: 'exclusive' }, { timeoutMs: 10_000 }));
  return held;
}

/** One copy request per image, `source` → `destination`, ids `<prefix>-1`, `<prefix>-2`, ... */
export function sendLateRequests(
  client: RawAmqpClient,
  topology: CellTopology,
  prefix: string,
  route: { source: string; destination: string },
  images = LATE_IMAGES,
): LateRequest[] {
  return images.map((imageId, i) => {
    const requestId = `${prefix}-${i + 1}`;
    const body = { v: 1, requestId, imageId, ...route };
    return { requestId, correlationId: client.send(topology.requestQueue.name, body) };
  });
}

/** What a conductor finally did with its delivery of a request, whichever way it went. */
export function outcomeOf(lines: LogLine[], requestId: string): LogLine | undefined {
  return lines.find(
    (l) =>
      l.requestId === requestId &&
      (l.msg.startsWith(DROPPED) ||
        l.msg === 'copy failed, retry scheduled' ||
        l.msg === 'copy request answered' ||
        l.msg === 'copy request failed and dead-lettered'),
  );
}

/**
 * The oracle: each request has exactly one reply, `completed` by `answeredBy`; the late conductor dropped
 * its delivery quietly and scheduled no retry.
 */
export function expectDroppedQuietly(
  client: RawAmqpClient,
  sent: LateRequest[],
  lateLines: LogLine[],
  answeredBy: string,
): void {
  for (const s of sent) {
    const replies = client.replies.filter((r) => r.correlationId === s.correlationId).map((r) => r.body);
    expect(replies, `replies to ${s.requestId}`).toEqual([
      expect.objectContaining({ status: 'completed', conductorId: answeredBy }),
    ]);
    expect(outcomeOf(lateLines, s.requestId)?.msg, s.requestId).toMatch(new RegExp(`^${DROPPED}`));
  }
  expect(lateLines.filter((l) => l.msg === 'copy failed, retry scheduled')).toEqual([]);
}

/** The dropped work, for the test's summary line. */
export function droppedSummary(lines: LogLine[]): string[] {
  return lines
    .filter((l) => l.msg.startsWith(DROPPED))
    .map((l) => `${String(l.requestId)}: ${String(l.dropped)}`);
}
