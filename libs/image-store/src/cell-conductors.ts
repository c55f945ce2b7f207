import { compareVersions } from '@app/contracts';
import type { ConductorRecord, ConductorRecordEntry } from './conductor-records';

/** CONDUCTOR_BEAT_MS and CONDUCTOR_DEAD_MS when unset (the conductor's config and `icc conductors`). */
export const DEFAULT_CONDUCTOR_BEAT_MS = 5_000;
export const DEFAULT_CONDUCTOR_DEAD_MS = 60_000;

/** A conductor of the cell as its record tells it, judged at one moment: decisions, no I/O. */
export interface CellConductor {
  conductorId: string;
  /** live: beat within CONDUCTOR_DEAD_MS (by the reader's clock); invalid: the file is not a valid record. */
  state: 'live' | 'dead' | 'invalid';
  /** Since the last beat (negative when the writer's clock is ahead of the reader's). */
  ageMs: number;
  record?: ConductorRecord;
  problem?: string;
}

/**
 * Liveness from the record's own last-beat time against the reader's clock: used to list conductors and to
 * decide a start, never for a lock (clocks of two hosts may disagree; CONDUCTOR_DEAD_MS is far above any
 * skew the cell's timing check lets through, and a wrong answer here only delays a start or a collection).
 */
export function judgeConductors(
  entries: ConductorRecordEntry[],
  nowMs: number,
  deadMs: number,
): CellConductor[] {
  return entries.map((entry) => {
    if (!entry.record)
      return {
        conductorId: entry.conductorId,
        state: 'invalid',
        ageMs: nowMs - entry.mtimeMs,
        problem: entry.invalid,
      };
    const ageMs = nowMs - Date.parse(entry.record.lastBeatAt);
    return {
      conductorId: entry.conductorId,
      state: ageMs <= deadMs ? 'live' : 'dead',
      ageMs,
      record: entry.record,
    };
  });
}

/** The conductor that wants to start. */
export interface StartingConductor {
  conductorId: string;
  version: string;
  /** The previous release's version (N−1): a live conductor older than it cannot share the cell. */
  previousVersion: string | null;
  protocols: Readonly<Record<string, number>>;
}

/**
 * Why the starting conductor must not join the cell, or undefined: a live conductor older than the previous
 * release, or one that writes a shared format in a version newer than the starter speaks. Its own record
 * (left by its previous life under the same id) does not count.
 */
export function startRefusal(cell: CellConductor[], self: StartingConductor): string | undefined {
  const reasons: string[] = [];
  for (const c of cell) {
    if (c.state !== 'live' || !c.record || c.conductorId === self.conductorId) continue;
    const r = c.record;
    const who = `${c.conductorId} (${r.version} on ${r.host}, last beat ${Math.max(0, Math.round(c.ageMs / 1000))} s ago)`;
    if (self.previousVersion !== null && compareVersions(r.version, self.previousVersion) < 0)
      reasons.push(
        `${who} is older than ${self.previousVersion}, the oldest release ${self.version} runs beside`,
      );
    const needs = Object.entries(r.requires)
      .filter(([name, v]) => (self.protocols[name] ?? 0) < v)
      .map(([name, v]) => `${name} ${v} (this release speaks ${self.protocols[name] ?? 'none'})`);
    if (needs.length > 0)
      reasons.push(`${who} writes shared files this release cannot read: ${needs.join(', ')}`);
  }
  if (reasons.length === 0) return undefined;
  return `refusing to start ${self.version} in this cell: ${reasons.join('; ')}. Upgrade or stop those conductors first, or run a release that can join them (docs/upgrades.md).`;
}
