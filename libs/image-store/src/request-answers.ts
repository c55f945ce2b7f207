import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type CopyResult, copyResultSchema, parseField, requestIdSchema } from '@app/contracts';
import { listNames, makeCellFolder, writeFileOnce } from './durable-fs';
import { readJsonFile } from './shared-json-file';
import type { StoreContext } from './store-context';

/** Beside the node folders; the name cannot be a node id (a node id starts with a letter or digit). */
export const ANSWERS_FOLDER = '.icc-answers';

/** A result is at most a few kilobytes (its detail is cut at 4096 characters). */
const MAX_ANSWER_BYTES = 16 * 1024;

/** The time index's folder; a dot name, never a bucket (two hex digits). */
const BY_TIME = '.by-time';
/** One folder of the time index per hour of recording: retention lists only the hours that expired. */
export const ANSWER_SLOT_MS = 60 * 60 * 1000;

/**
 * The first final answer of each plain copy request, so that a request id is answered one way however
 * often it is sent again or cancelled afterwards:
 * ```
 * <root>/.icc-answers/<bucket>/<requestId>.json   the first final result; bucket: 2 hex digits of its sha256
 * <root>/.icc-answers/.by-time/<hour>/<bucket>~<requestId>
 *                                                  an empty marker per recording, <hour> = ms since epoch / 1 h
 * ```
 * First writer wins (writeFileOnce): two conductors finishing duplicates of one request at once both
 * answer what was recorded first. Buckets keep each folder small (a cell answers many requests a day);
 * records older than JOB_KEEP_MS are removed like cancel markers.
 *
 * The time index makes retention cost follow change: a round lists the index and only the hours that
 * expired, instead of stat-ing every record of the last JOB_KEEP_MS every hour. The marker is written
 * before the record, so no record is ever without one (a marker without its record, after a crash, is
 * removed like any other). A marker only nominates: the record goes when its own mtime is old enough.
 */
export class RequestAnswers {
  constructor(
    private readonly store: StoreContext,
    private readonly now: () => number = Date.now,
  ) {}

  private place(requestId: string): { dir: string; name: string } {
    const id = parseField(requestIdSchema, requestId, 'requestId');
    const bucket = createHash('sha256').update(id).digest('hex').slice(0, 2);
    return { dir: path.join(this.store.root, ANSWERS_FOLDER, bucket), name: `${id}.json` };
  }

  /**
   * Records `result` as the request's final answer unless one is recorded; returns the answer that stands
   * (ours, or the earlier one).
   */
  async record(result: CopyResult): Promise<{ answer: CopyResult; first: boolean }> {
    const { dir, name } = this.place(result.requestId);
    await this.mark(path.basename(dir), result.requestId);
    await makeCellFolder(this.store.root, dir);
    if (await writeFileOnce(dir, name, JSON.stringify(result), this.store.fsync))
      return { answer: result, first: true };
    return { answer: (await this.read(result.requestId)) ?? result, first: false };
  }

  /** The request's recorded final answer; undefined when none (or an unreadable one: the request runs again). */
  async read(requestId: string): Promise<CopyResult | undefined> {
    const { dir, name } = this.place(requestId);
    const read = await readJsonFile(path.join(dir, name), copyResultSchema, MAX_ANSWER_BYTES, (r) =>
      r.requestId === requestId ? undefined : `requestId: ${r.requestId}, not ${requestId}`,
    );
    return read.value;
  }

  /** The time index's marker of a recording now (see the class comment). */
  private async mark(bucket: string, requestId: string): Promise<void> {
    const slot = path.join(
      this.store.root,
      ANSWERS_FOLDER,
      BY_TIME,
      String(Math.floor(this.now() / ANSWER_SLOT_MS)),
    );
    await makeCellFolder(this.store.root, slot);
    await fsp.writeFile(path.join(slot, `${bucket}~${requestId}`), '');
  }

  /**
   * Removes the records whose last change is older than `olderThanMs`; returns how many. Only the hours of
   * the time index that began before the cutoff are read; an hour that ended before it goes with its
   * markers. A marker's record that is younger than the cutoff stays (recorded again later: a newer
   * marker names it).
   */
  async removeOlderThan(olderThanMs: number): Promise<number> {
    const cutoff = this.now() - olderThanMs;
    const index = path.join(this.store.root, ANSWERS_FOLDER, BY_TIME);
    let removed = 0;
    for (const slotName of await listNames(index)) {
      const slot = Number(slotName);
      if (!/^\d+$/.test(slotName) || slot * ANSWER_SLOT_MS > cutoff) continue;
      const slotDir = path.join(index, slotName);
      const ended = (slot + 1) * ANSWER_SLOT_MS <= cutoff;
      for (const marker of await listNames(slotDir)) {
        const split = marker.indexOf('~');
        if (split < 0) continue;
        const file = path.join(
          this.store.root,
          ANSWERS_FOLDER,
          marker.slice(0, split),
          `${marker.slice(split + 1)}.json`,
        );
        const stat = await fsp.stat(file).catch(() => undefined);
        if (stat && stat.mtimeMs <= cutoff) {
          await fsp.rm(file, { force: true });
          removed += 1;
        } else if (stat && !ended) continue;
        await fsp.rm(path.join(slotDir, marker), { force: true });
      }
      if (ended) await fsp.rm(slotDir, { recursive: true, force: true });
    }
    return removed;
  }
}
