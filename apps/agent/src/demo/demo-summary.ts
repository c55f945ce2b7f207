import type { CopyResult } from '@app/contracts';
import { formatBytes, formatMs, mibPerSecond, percentile } from '../cli/format';
import { keyValueTable, table } from '../cli/tables';
import type { DemoCopy } from './demo-plan';

export interface DemoOutcome {
  copy: DemoCopy;
  result?: CopyResult;
  /** Answered by a copy already running for the same image and destination (from the conductor's log). */
  coalesced?: boolean;
  /** Why there is no result (timed out, interrupted). */
  error?: string;
}

export interface DemoSummary {
  requested: number;
  /** Copies that moved bytes (completed, not coalesced). */
  copied: number;
  alreadyPresent: number;
  coalesced: number;
  failed: number;
  /** Requests without a final result. */
  unanswered: number;
  bytes: number;
  wallMs: number;
  lockWaitP50?: number;
  lockWaitMax?: number;
}

export function summarize(outcomes: readonly DemoOutcome[], wallMs: number): DemoSummary {
  const summary: DemoSummary = {
    requested: outcomes.length,
    copied: 0,
    alreadyPresent: 0,
    coalesced: 0,
    failed: 0,
    unanswered: 0,
    bytes: 0,
    wallMs,
  };
  const lockWaits: number[] = [];
  for (const { result, coalesced } of outcomes) {
    if (!result) {
      summary.unanswered++;
      continue;
    }
    if (result.durations.lockWaitMs !== undefined) lockWaits.push(result.durations.lockWaitMs);
    if (result.status === 'failed') summary.failed++;
    else if (coalesced) summary.coalesced++;
    else if (result.status === 'already-present') summary.alreadyPresent++;
    else {
      summary.copied++;
      summary.bytes += result.bytes ?? 0;
    }
  }
  summary.lockWaitP50 = percentile(lockWaits, 50);
  summary.lockWaitMax = lockWaits.length > 0 ? Math.max(...lockWaits) : undefined;
  return summary;
}

export function outcomeStatus(outcome: DemoOutcome): string {
  const { result } = outcome;
  if (!result) return outcome.error ?? 'no result';
  if (result.status === 'failed') return `failed ${result.reason}`;
  return outcome.coalesced ? `${result.status} (coalesced)` : result.status;
}

/** One row per request. */
export function renderOutcomes(outcomes: readonly DemoOutcome[]): string {
  return table(
    ['#', 'kind', 'image', 'source -> destination', 'status', 'bytes', 'lock wait', 'total'],
    outcomes.map((o, i) => {
      const r = o.result;
      return [
        String(i + 1),
        o.copy.kind,
        o.copy.request.imageId,
        `${r?.source ?? o.copy.request.source ?? (r?.status === 'completed' ? '(origin)' : '(any)')} -> ${o.copy.request.destination}`,
        outcomeStatus(o),
        r?.status === 'completed' && !o.coalesced ? formatBytes(r.bytes) : '-',
        formatMs(r?.durations.lockWaitMs),
        formatMs(r?.durations.totalMs),
      ];
    }),
  );
}

export function renderSummary(s: DemoSummary): string {
  const rows: [string, string][] = [
    ['copies requested', String(s.requested)],
    ['copies done (bytes moved)', String(s.copied)],
    ['already-present / coalesced', `${s.alreadyPresent} / ${s.coalesced}`],
    ['failed', String(s.failed)],
  ];
  if (s.unanswered > 0) rows.push(['without a result', String(s.unanswered)]);
  rows.push(
    ['bytes copied', formatBytes(s.bytes)],
    ['wall time', formatMs(s.wallMs)],
    ['throughput', mibPerSecond(s.bytes, s.wallMs)],
    ['lock wait p50 / max', `${formatMs(s.lockWaitP50)} / ${formatMs(s.lockWaitMax)}`],
  );
  return keyValueTable(rows);
}
