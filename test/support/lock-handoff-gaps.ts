import { promises as fsp } from 'node:fs';
import type { LockWorkerReport, TraceEntry } from './lock-worker';

/**
 * One hand-off of a key between lock workers: from the call of release() (a slow release is part of the
 * hand-off) to the next acquisition, on one wall clock.
 */
export interface HandOff {
  ms: number;
  releasedAt: number;
  acquiredAt: number;
  /** The process that acquired: its trace says what it was doing during the gap. */
  acquiredPid: number;
  releasedPid: number;
}

/** Every release followed directly by an acquisition, across all workers, slowest last. */
export function handOffs(reports: LockWorkerReport[]): HandOff[] {
  const events = reports
    .filter((m) => m.type === 'released' || m.type === 'acquired')
    // One key, one holder at a time: at the same millisecond, the release came first.
    .sort((a, b) => a.at! - b.at! || (a.type === 'released' ? -1 : 1));
  const found: HandOff[] = [];
  for (let i = 1; i < events.length; i++) {
    const [before, after] = [events[i - 1]!, events[i]!];
    if (before.type === 'released' && after.type === 'acquired')
      found.push({
        ms: after.at! - (before.releasing ?? before.at!),
        releasedAt: before.releasing ?? before.at!,
        acquiredAt: after.at!,
        acquiredPid: after.pid,
        releasedPid: before.pid,
      });
  }
  return found.sort((a, b) => a.ms - b.ms);
}

/** The q-quantile (0..1) of sorted values, nearest rank. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * What the releasing and the acquiring worker's seam calls did during a hand-off (calls that overlap it,
 * with their start relative to the release call and their duration): where a slow hand-off's time went.
 */
export async function describeHandOff(gap: HandOff, traceFileOf: (pid: number) => string): Promise<string> {
  const parts: string[] = [];
  for (const [who, pid] of [
    ['releaser', gap.releasedPid],
    ['acquirer', gap.acquiredPid],
  ] as const) {
    let trace: TraceEntry[];
    try {
      trace = JSON.parse(await fsp.readFile(traceFileOf(pid), 'utf8')) as TraceEntry[];
    } catch {
      parts.push(`${who}: no trace`);
      continue;
    }
    const calls = trace.filter(
      (e): e is Extract<TraceEntry, { call: string }> =>
        'call' in e && e.at + e.ms >= gap.releasedAt && e.at <= gap.acquiredAt,
    );
    const slow = calls
      .filter((c) => c.ms >= 20)
      .map((c) => `+${c.at - gap.releasedAt}ms ${c.call} ${c.target} ${Math.round(c.ms)}ms`);
    parts.push(`${who}: ${calls.length} calls${slow.length > 0 ? `, >= 20 ms: ${slow.join('; ')}` : ''}`);
  }
  return `${gap.ms} ms: ${parts.join(' | ')}`;
}
