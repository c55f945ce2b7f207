import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ConductorRecord, ConductorRecordEntry } from '@app/image-store';
import { deferred } from '../../../../test/support/async';
import { recordingLogger } from '../../../../test/support/recording-logger';
import { ConductorHeartbeat } from './conductor-heartbeat';

const BEAT_MS = 1_000;
const DEAD_MS = 10_000;
const T0 = Date.parse('2026-01-01T12:00:00Z');

/** An in-memory records folder that journals every call. */
class FakeRecords {
  readonly calls: string[] = [];
  readonly files = new Map<string, ConductorRecord>();
  writeGate?: Promise<void>;
  async write(record: ConductorRecord): Promise<void> {
    this.calls.push(`write ${record.conductorId} #${record.beat}`);
    await this.writeGate;
    this.files.set(record.conductorId, record);
  }
  async list(): Promise<ConductorRecordEntry[]> {
    this.calls.push('list');
    return [...this.files.values()].map((record) => ({ conductorId: record.conductorId, record }));
  }
  async remove(id: string): Promise<void> {
    this.calls.push(`remove ${id}`);
    this.files.delete(id);
  }
  async removeAbandonedTemporaries(): Promise<number> {
    return 0;
  }
}

function heartbeat(records: FakeRecords, now: () => number) {
  return new ConductorHeartbeat({
    records,
    self: {
      conductorId: 'me',
      host: 'h',
      pid: 1,
      version: '1.1.0',
      protocols: { wire: 1 },
      requires: { wire: 1 },
    },
    beatMs: BEAT_MS,
    deadMs: DEAD_MS,
    listEvery: 3,
    log: recordingLogger(),
    now,
  });
}

describe('ConductorHeartbeat', () => {
  afterEach(() => vi.useRealTimers());

  it('writes its record once per beat and lists the cell only every few beats', async () => {
    vi.useFakeTimers();
    const records = new FakeRecords();
    const beat = heartbeat(records, () => T0);
    beat.start();
    await vi.advanceTimersByTimeAsync(5 * BEAT_MS);
    expect(records.calls).toEqual([
      'write me #0',
      'list',
      'write me #1',
      'write me #2',
      'write me #3',
      'list',
      'write me #4',
      'write me #5',
    ]);
    expect(beat.cell().conductors).toMatchObject([{ conductorId: 'me', state: 'live', version: '1.1.0' }]);
    await beat.stop();
  });

  it('never starts a second write while one has not come back (a hung mount)', async () => {
    vi.useFakeTimers();
    const records = new FakeRecords();
    const hung = deferred<void>();
    records.writeGate = hung.promise;
    const beat = heartbeat(records, () => T0);
    beat.start();
    await vi.advanceTimersByTimeAsync(20 * BEAT_MS);
    expect(records.calls).toEqual(['write me #0']);
    hung.resolve();
    await vi.advanceTimersByTimeAsync(BEAT_MS);
    expect(records.calls).toEqual(['write me #0', 'list', 'write me #1']);
    await beat.stop();
  });

  it("removes dead conductors' records (never its own) and its own record at a clean stop", async () => {
    const records = new FakeRecords();
    const old = (id: string, ageMs: number): ConductorRecord => ({
      v: 1,
      conductorId: id,
      host: 'x',
      pid: 2,
      version: '1.0.0',
      protocols: {},
      requires: {},
      startedAt: new Date(T0 - 99_000).toISOString(),
      lastBeatAt: new Date(T0 - ageMs).toISOString(),
      beat: 9,
    });
    records.files.set('gone', old('gone', DEAD_MS + 1));
    records.files.set('slow', old('slow', DEAD_MS - 1));
    const beat = heartbeat(records, () => T0);
    await beat.tick();
    expect(records.calls).toEqual(['write me #0', 'list', 'remove gone']);
    expect([...records.files.keys()].sort()).toEqual(['me', 'slow']);
    expect(beat.cell()).toMatchObject({ collected: 1 });
    await beat.stop();
    expect([...records.files.keys()]).toEqual(['slow']);
  });
});
