import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type CopyResult, copyResultSchema, parseField, requestIdSchema } from '@app/contracts';
import { listNames, writeFileOnce } from './durable-fs';
import { readJsonFile } from './shared-json-file';
import type { StoreContext } from './store-context';

/** Beside the node folders; the name cannot be a node id (a node id starts with a letter or digit). */
export const ANSWERS_FOLDER = '.icc-answers';

/** A result is at most a few kilobytes (its detail is cut at 4096 characters). */
const MAX_ANSWER_BYTES = 16 * 1024;

/**
 * The first final answer of each plain copy request, so that a request id is answered one way however
 * often it is sent again or cancelled afterwards:
 * ```
 * <root>/.icc-answers/<bucket>/<requestId>.json   the first final result; bucket: 2 hex digits of its sha256
 * ```
 * First writer wins (writeFileOnce): two conductors finishing duplicates of one request at once both
 * answer what was recorded first. Buckets keep each folder small (a cell answers many requests a day);
 * records older than JOB_KEEP_MS are removed like cancel markers.
 */
export class RequestAnswers {
  constructor(private readonly store: StoreContext) {}

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
    await fsp.mkdir(dir, { recursive: true });
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

  /** Removes the records whose last change is older than `olderThanMs`; returns how many. */
  async removeOlderThan(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    const root = path.join(this.store.root, ANSWERS_FOLDER);
    let removed = 0;
    for (const bucket of await listNames(root)) {
      const dir = path.join(root, bucket);
      for (const name of await listNames(dir)) {
        const file = path.join(dir, name);
        const stat = await fsp.stat(file).catch(() => undefined);
        if (!stat || stat.mtimeMs > cutoff) continue;
        await fsp.rm(file, { force: true });
        removed += 1;
      }
    }
    return removed;
  }
}
