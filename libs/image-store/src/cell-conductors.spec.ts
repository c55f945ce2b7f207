import { describe, expect, it } from 'vitest';
import { type CellConductor, judgeConductors, startRefusal } from './cell-conductors';
import type { ConductorRecord } from './conductor-records';

const NOW = Date.parse('2026-01-01T12:00:00Z');

function record(id: string, over: Partial<ConductorRecord> = {}): ConductorRecord {
  return {
    v: 1,
    conductorId: id,
    host: 'host-a',
    pid: 42,
    version: '1.1.0',
    protocols: { wire: 1, locks: 1 },
    requires: { wire: 1, locks: 1 },
    startedAt: new Date(NOW - 600_000).toISOString(),
    lastBeatAt: new Date(NOW - 1_000).toISOString(),
    beat: 120,
    ...over,
  };
}

const self = {
  conductorId: 'c-new',
  version: '1.1.0',
  previousVersion: '1.0.0',
  protocols: { wire: 1, locks: 1 },
};

describe('the cell conductors, judged from their records', () => {
  it('is live while the last beat is within the dead time, dead after, invalid for a broken file', () => {
    const cell = judgeConductors(
      [
        { conductorId: 'a', record: record('a') },
        { conductorId: 'b', record: record('b', { lastBeatAt: new Date(NOW - 61_000).toISOString() }) },
        { conductorId: 'c', invalid: 'version: must be a version', mtimeMs: NOW - 5_000 },
      ],
      NOW,
      60_000,
    );
    expect(cell.map((c) => [c.conductorId, c.state, c.ageMs])).toEqual([
      ['a', 'live', 1_000],
      ['b', 'dead', 61_000],
      ['c', 'invalid', 5_000],
    ]);
  });

  const live = (r: ConductorRecord): CellConductor => ({
    conductorId: r.conductorId,
    state: 'live',
    ageMs: 2_000,
    record: r,
  });

  it('lets a release start beside the previous release, itself and a newer one', () => {
    const cell = [
      live(record('old', { version: '1.0.0' })),
      live(record('same')),
      live(record('next', { version: '1.2.0' })),
    ];
    expect(startRefusal(cell, self)).toBeUndefined();
  });

  it('refuses a live conductor older than the previous release, naming it, its version and host', () => {
    const cell = [
      live(record('ancient-1', { version: '0.9.3', host: 'h9' })),
      live(record('ok', { version: '1.0.0' })),
    ];
    expect(startRefusal(cell, self)).toMatch(
      /^refusing to start 1\.1\.0 in this cell: ancient-1 \(0\.9\.3 on h9, last beat 2 s ago\) is older than 1\.0\.0, the oldest release 1\.1\.0 runs beside\./,
    );
  });

  it('refuses a live conductor that writes a shared format newer than this release speaks, or one it does not know', () => {
    const cell = [live(record('next', { version: '1.3.0', requires: { wire: 1, locks: 2, quotas: 1 } }))];
    expect(startRefusal(cell, self)).toContain(
      'next (1.3.0 on host-a, last beat 2 s ago) writes shared files this release cannot read: locks 2 (this release speaks 1), quotas 1 (this release speaks none)',
    );
  });

  it('does not count dead or invalid records, nor its own record of an earlier life', () => {
    const old = record('ancient', { version: '0.1.0' });
    const cell: CellConductor[] = [
      { conductorId: 'ancient', state: 'dead', ageMs: 90_000, record: old },
      { conductorId: 'junk', state: 'invalid', ageMs: 0, problem: 'not JSON' },
      live(record('c-new', { version: '0.1.0' })),
    ];
    expect(startRefusal(cell, self)).toBeUndefined();
  });
});
