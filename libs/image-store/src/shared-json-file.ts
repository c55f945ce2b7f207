import { errorText } from '@app/contracts';
import { promises as fsp } from 'node:fs';
import type { z } from 'zod';
import { isErrno } from './fs-errors';

/**
 * A JSON file read from the shared folder (meta files, node markers, piece lists): any node may have written it,
 * so it is validated and its problem, when it has one, says which field and why.
 */
export type JsonFileRead<T> =
  | { value: T; missing?: undefined; invalid?: undefined }
  | { missing: true; value?: undefined; invalid?: undefined }
  | { invalid: string; mtimeMs: number; value?: undefined; missing?: undefined };

/**
 * How often a file is opened again when it was replaced while being read. Records are replaced by rename,
 * and a GlusterFS client then answers the reader's `fstat`, `read` or `close` of the old file ENOENT or
 * ESTALE: on the bed about 1 read in 8 while another client rewrote the file without pause.
 */
const READS_OF_A_REPLACED_FILE = 5;

/** The reading handle's file was replaced or removed after it was opened (see READS_OF_A_REPLACED_FILE). */
const REPLACED = Symbol('replaced');

/**
 * Reads and validates `file` with `schema`, then `check` (a problem text or undefined). Missing → missing;
 * not a file, too big, not JSON or not valid → invalid with the reason. A file replaced while read is read
 * again. Other I/O errors (EIO, EACCES...) are thrown, so a transient fault is not mistaken for a missing
 * or broken file.
 */
export async function readJsonFile<T>(
  file: string,
  schema: z.ZodType<T>,
  maxBytes: number,
  check: (value: T) => string | undefined = () => undefined,
): Promise<JsonFileRead<T>> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await readOnce(file, schema, maxBytes, check);
    } catch (error) {
      if (error !== REPLACED) throw error;
      if (attempt === READS_OF_A_REPLACED_FILE) {
        throw new Error(`${file}: replaced while it was read, ${READS_OF_A_REPLACED_FILE} times in a row`);
      }
    }
  }
}

async function readOnce<T>(
  file: string,
  schema: z.ZodType<T>,
  maxBytes: number,
  check: (value: T) => string | undefined,
): Promise<JsonFileRead<T>> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(file, 'r');
  } catch (error) {
    if (isErrno(error, 'ENOENT', 'ENOTDIR')) return { missing: true };
    throw error;
  }
  try {
    const stat = await handle.stat();
    const invalid = (reason: string) => ({ invalid: reason, mtimeMs: stat.mtimeMs });
    if (!stat.isFile()) return invalid('not a regular file');
    // Refusing files over the bound keeps a corrupt or hostile file from costing memory.
    if (stat.size > maxBytes) return invalid(`larger than ${maxBytes} bytes`);
    // One byte more than the file had: a file that grew since the stat shows it. A big file (a piece
    // list) may take several reads.
    const buffer = Buffer.alloc(stat.size + 1);
    let bytesRead = 0;
    for (;;) {
      const { bytesRead: n } = await handle.read(buffer, bytesRead, buffer.length - bytesRead, bytesRead);
      if (n === 0) break;
      bytesRead += n;
      if (bytesRead === buffer.length) break;
    }
    if (bytesRead > stat.size) return invalid('changed while it was read');
    let json: unknown;
    try {
      json = JSON.parse(buffer.subarray(0, bytesRead).toString('utf8'));
    } catch (error) {
      return invalid(`not JSON (${errorText(error)})`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) return invalid(describeIssues(parsed.error));
    const problem = check(parsed.data);
    return problem === undefined ? { value: parsed.data } : invalid(problem);
  } catch (error) {
    if (isErrno(error, 'EISDIR')) return { invalid: 'not a regular file', mtimeMs: 0 };
    // ENOENT here (ESTALE included) is about the file this handle opened, gone since: the path may
    // already name its successor.
    if (isErrno(error, 'ENOENT')) throw REPLACED;
    throw error;
  } finally {
    // A handle only read from has nothing to flush: its close can only report that the file went
    // (ENOENT, ESTALE), and what was read is already checked. The descriptor is freed either way.
    await handle.close().catch(() => undefined);
  }
}

/** "lastUsedAt: Invalid input: expected string, received undefined; size: ..." (the root as "(file)"). */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(file)'}: ${issue.message}`)
    .join('; ');
}

/**
 * Remembers which versions (path + mtime) of broken files were reported, so that a broken file read on
 * every request is reported once, and again only once it changed. Bounded: the oldest entries are forgotten.
 */
export class OncePerFileVersion {
  private readonly seen = new Map<string, number>();

  constructor(private readonly capacity = 10_000) {}

  /** True the first time this version of `file` is seen. */
  first(file: string, mtimeMs: number): boolean {
    if (this.seen.get(file) === mtimeMs) return false;
    this.seen.delete(file);
    this.seen.set(file, mtimeMs);
    if (this.seen.size > this.capacity) this.seen.delete(this.seen.keys().next().value!);
    return true;
  }
}
