import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { HoldProof } from '../support/hosts/hold-logging-conductor';

/** One attempt's hold of one key: from its grant to the last check that proved it. */
export interface HoldSpan {
  key: string;
  mode: 'exclusive' | 'shared';
  holder: string;
  fencingToken: number;
  fromMs: number;
  toMs: number;
}

export interface HoldVerdict {
  proofs: number;
  spans: number;
  takeovers: number;
  /** An exclusive span that overlaps another holder's span of the same key: two holders at once. */
  overlaps: Array<{ key: string; a: HoldSpan; b: HoldSpan }>;
}

/**
 * Judges "never two holders" from the hold logs the conductors wrote outside the shared folder
 * (test/support/hosts/hold-logging-conductor.ts), on the machine's one monotonic clock: per key and
 * attempt, the span from the grant to the last successful check; an exclusive span may not overlap any
 * other attempt's span of that key (exclusive or shared). A holder paused and taken over proves nothing
 * after its takeover (its checks fail), so its span ends before the next holder's begins.
 */
export async function judgeHoldLogs(dir: string): Promise<HoldVerdict> {
  const proofs: HoldProof[] = [];
  for (const name of await fsp.readdir(dir)) {
    const text = await fsp.readFile(path.join(dir, name), 'utf8');
    for (const line of text.split('\n')) if (line.startsWith('{')) proofs.push(JSON.parse(line) as HoldProof);
  }
  const spans = new Map<string, HoldSpan>();
  for (const p of proofs) {
    const key = `${p.node}/${p.imageId}`;
    const holder = `${p.conductorId}~${p.attemptId}`;
    const id = `${key}|${p.mode}|${holder}|${p.fencingToken}`;
    const span = spans.get(id);
    if (!span)
      spans.set(id, {
        key,
        mode: p.mode,
        holder,
        fencingToken: p.fencingToken,
        fromMs: p.monoMs,
        toMs: p.monoMs,
      });
    else {
      span.fromMs = Math.min(span.fromMs, p.monoMs);
      span.toMs = Math.max(span.toMs, p.monoMs);
    }
  }
  const byKey = new Map<string, HoldSpan[]>();
  for (const s of spans.values()) byKey.set(s.key, [...(byKey.get(s.key) ?? []), s]);
  const overlaps: HoldVerdict['overlaps'] = [];
  for (const [key, list] of byKey) {
    list.sort((x, y) => x.fromMs - y.fromMs);
    for (let i = 0; i < list.length; i++)
      for (let j = i + 1; j < list.length && list[j]!.fromMs <= list[i]!.toMs; j++) {
        const [a, b] = [list[i]!, list[j]!];
        if (a.holder !== b.holder && (a.mode === 'exclusive' || b.mode === 'exclusive'))
          overlaps.push({ key, a, b });
      }
  }
  return {
    proofs: proofs.length,
    spans: spans.size,
    takeovers: proofs.filter((p) => p.event === 'granted' && p.tookOverStale).length,
    overlaps,
  };
}
