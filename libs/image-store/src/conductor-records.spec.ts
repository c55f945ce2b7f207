import { promises as fsp } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ConductorRecord, ConductorRecords, CONDUCTORS_FOLDER } from './conductor-records';

function record(id: string): ConductorRecord {
  return {
    v: 1,
    conductorId: id,
    host: 'host-a',
    pid: 42,
    version: '1.1.0',
    protocols: { wire: 1 },
    requires: { wire: 1 },
    startedAt: '2026-01-01T12:00:00.000Z',
    lastBeatAt: '2026-01-01T12:00:05.000Z',
    beat: 1,
  };
}

describe('conductor records in the shared folder', () => {
  let root: string;
  let records: ConductorRecords;
  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'icc-records-'));
    await mkdir(path.join(root, 'node-1')); // a cell's CACHE_ROOT is never empty (makeCellFolder)
    records = new ConductorRecords(root);
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('writes a record (making the folder) and reads it back; rewriting replaces it', async () => {
    expect(await records.list()).toEqual([]);
    await records.write(record('c1'));
    await records.write({ ...record('c1'), beat: 2 });
    expect(await records.list()).toEqual([{ conductorId: 'c1', record: { ...record('c1'), beat: 2 } }]);
    expect(await fsp.readdir(path.join(root, CONDUCTORS_FOLDER))).toEqual(['c1.json']);
  });

  it("reads a later release's record with fields it does not know (they are ignored)", async () => {
    await fsp.mkdir(records.folder);
    await fsp.writeFile(
      path.join(records.folder, 'c2.json'),
      JSON.stringify({ ...record('c2'), zone: 'z1' }),
    );
    expect(await records.list()).toEqual([{ conductorId: 'c2', record: record('c2') }]);
  });

  it('reports a broken record as invalid, naming the field and the reason; temporaries and other files are not records', async () => {
    await fsp.mkdir(records.folder);
    const { lastBeatAt: _dropped, ...renamed } = record('c3');
    await fsp.writeFile(path.join(records.folder, 'c3.json'), JSON.stringify({ ...renamed, lastBeat: 'x' }));
    await fsp.writeFile(path.join(records.folder, 'c4.json'), JSON.stringify(record('other')));
    await fsp.writeFile(path.join(records.folder, 'c5.json'), '{"v":1,');
    await fsp.writeFile(path.join(records.folder, '.c1.beat-1.tmp'), '{}');
    await fsp.writeFile(path.join(records.folder, 'notes.txt'), 'hello');
    const list = await records.list();
    expect(list.map((e) => [e.conductorId, e.invalid])).toEqual([
      ['c3', expect.stringMatching(/lastBeatAt/)],
      ['c4', "conductorId other is not the file's name"],
      ['c5', expect.stringMatching(/^not JSON/)],
    ]);
  });

  it('removes records, and temporaries once older than asked', async () => {
    await records.write(record('c1'));
    const tmp = path.join(records.folder, '.c9.beat-2.tmp');
    await fsp.writeFile(tmp, '{}');
    const mtime = (await fsp.stat(tmp)).mtimeMs;
    expect(await records.removeAbandonedTemporaries(60_000, mtime + 1_000)).toBe(0);
    expect(await records.removeAbandonedTemporaries(60_000, mtime + 61_000)).toBe(1);
    await records.remove('c1');
    await records.remove('c1');
    expect(await fsp.readdir(records.folder)).toEqual([]);
  });
});
