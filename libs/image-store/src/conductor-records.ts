import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { holderIdSchema, isoTimestampSchema, parseField, releaseVersionSchema } from '@app/contracts';
import { makeCellFolder, uniqueTag } from './durable-fs';
import { isErrno } from './fs-errors';
import { readJsonFile } from './shared-json-file';

/**
 * Beside the node folders; its name cannot be a node id (a node id starts with a letter or digit), so a
 * 1.0.0 conductor and `icc` ignore it (their node listing skips it, their start check and sweeps never
 * look there).
 */
export const CONDUCTORS_FOLDER = '.icc-conductors';

const RECORD_SUFFIX = '.json';
/** A temporary name is `.<conductorId>.<uuid>.tmp`: never read as a record. */
const TMP_PREFIX = '.';
const MAX_RECORD_BYTES = 4 * 1024;

const formatVersions = z.record(
  z.string().regex(/^[A-Za-z][A-Za-z0-9]{0,39}$/, 'must be a format name (letters and digits)'),
  z.number().int().min(1).max(1_000_000),
);

/**
 * A conductor's heartbeat record, rewritten every CONDUCTOR_BEAT_MS. Not strict: a later release may add
 * fields, and this one must still read its records (docs/upgrades.md); `v` changes only with a change that
 * an older reader would misread.
 */
export const conductorRecordSchema = z.object({
  v: z.literal(1),
  conductorId: holderIdSchema,
  host: z.string().min(1).max(255),
  pid: z.number().int().min(1),
  version: releaseVersionSchema,
  /** The version of each shared format it speaks (PROTOCOLS of its release). */
  protocols: formatVersions,
  /** The lowest version of each format it writes in the cell: every conductor beside it must speak at least that. */
  requires: formatVersions,
  startedAt: isoTimestampSchema,
  lastBeatAt: isoTimestampSchema,
  /** Counts the beats since its start. */
  beat: z.number().int().min(0),
});
export type ConductorRecord = z.infer<typeof conductorRecordSchema>;

/** One file of the folder: a valid record, or why it is not one. */
export type ConductorRecordEntry =
  | { conductorId: string; record: ConductorRecord; invalid?: undefined }
  | { conductorId: string; invalid: string; mtimeMs: number; record?: undefined };

/**
 * The conductors' records in the shared folder: `<root>/.icc-conductors/<conductorId>.json`, each written
 * only by its conductor (to a temporary name, then renamed over the old one: a reader sees the old record
 * or the new one, never a torn one). Other releases write here too, so every record read is validated.
 */
export class ConductorRecords {
  readonly folder: string;

  constructor(root: string) {
    this.folder = path.join(root, CONDUCTORS_FOLDER);
  }

  private file(conductorId: string): string {
    return path.join(this.folder, parseField(holderIdSchema, conductorId, 'conductorId') + RECORD_SUFFIX);
  }

  /** One write (and a rename); the folder is made on first use. */
  async write(record: ConductorRecord): Promise<void> {
    const tmp = path.join(this.folder, `${TMP_PREFIX}${record.conductorId}.${uniqueTag('beat')}.tmp`);
    const data = JSON.stringify(record);
    try {
      await fsp.writeFile(tmp, data);
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error;
      await makeCellFolder(path.dirname(this.folder), this.folder);
      await fsp.writeFile(tmp, data);
    }
    try {
      await fsp.rename(tmp, this.file(record.conductorId));
    } catch (error) {
      await fsp.unlink(tmp).catch(() => undefined);
      throw error;
    }
  }

  /** Every record of the cell (one readdir, one small read each); no folder yet: none. */
  async list(): Promise<ConductorRecordEntry[]> {
    let names: string[];
    try {
      names = await fsp.readdir(this.folder);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return [];
      throw error;
    }
    const entries: ConductorRecordEntry[] = [];
    for (const name of names.sort()) {
      if (!name.endsWith(RECORD_SUFFIX) || name.startsWith(TMP_PREFIX)) continue;
      const conductorId = name.slice(0, -RECORD_SUFFIX.length);
      const read = await readJsonFile(
        path.join(this.folder, name),
        conductorRecordSchema,
        MAX_RECORD_BYTES,
        (r) =>
          r.conductorId === conductorId ? undefined : `conductorId ${r.conductorId} is not the file's name`,
      );
      if (read.missing) continue;
      entries.push(
        read.value
          ? { conductorId, record: read.value }
          : { conductorId, invalid: read.invalid, mtimeMs: read.mtimeMs },
      );
    }
    return entries;
  }

  /** Removes a record (a dead conductor's, or one's own at a clean stop). */
  async remove(conductorId: string): Promise<void> {
    await fsp.unlink(this.file(conductorId)).catch((error: unknown) => {
      if (!isErrno(error, 'ENOENT')) throw error;
    });
  }

  /** Removes temporary files older than `olderThanMs` (a conductor killed between its write and rename). */
  async removeAbandonedTemporaries(olderThanMs: number, nowMs = Date.now()): Promise<number> {
    const names = await fsp.readdir(this.folder).catch(() => [] as string[]);
    let removed = 0;
    for (const name of names) {
      if (!name.startsWith(TMP_PREFIX) || !name.endsWith('.tmp')) continue;
      const file = path.join(this.folder, name);
      const stat = await fsp.lstat(file).catch(() => undefined);
      if (stat?.isFile() && nowMs - stat.mtimeMs > olderThanMs) {
        await fsp.unlink(file).catch(() => undefined);
        removed++;
      }
    }
    return removed;
  }
}
