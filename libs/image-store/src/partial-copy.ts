import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import {
  ReasonError,
  byteCountSchema,
  holderIdSchema,
  imageIdSchema,
  nodeIdSchema,
  sha256Schema,
} from '@app/contracts';
import { type NodeLayout, RECORD_TAG_SUFFIX, parseTmpName } from './cache-layout';
import { uniqueTag, writeFileAtomic } from './durable-fs';
import { type IoContext, io, isErrno, mapIoError, readFolderOrEmpty } from './fs-errors';
import { COPY_CHUNK_BYTES, handleWrite, writeAll } from './image-copier';
import { readJsonFile } from './shared-json-file';
import type { StoreContext } from './store-context';

/**
 * `tmp/<imageId>~<attemptId>.origin.part`, written before the partial's first byte: what the partial
 * `tmp/<imageId>~<attemptId>.part` is a partial of, and (`verified`) how many of its first bytes were
 * fsynced and what their sha256 is. Another conductor reads it back: it is outside input, validated.
 */
export interface PartialRecord {
  v: 1;
  imageId: string;
  attemptId: string;
  /** The whole image's sha256 and size: a partial only ever continues into this image. */
  sha256: string;
  size: number;
  source?: { node: string };
  createdAt: string;
  verified?: { bytes: number; sha256: string };
}

const partialRecordSchema: z.ZodType<PartialRecord> = z.strictObject({
  v: z.literal(1),
  imageId: imageIdSchema,
  attemptId: holderIdSchema,
  sha256: sha256Schema,
  size: byteCountSchema,
  source: z.strictObject({ node: nodeIdSchema }).optional(),
  createdAt: z.iso.datetime(),
  verified: z.strictObject({ bytes: byteCountSchema, sha256: sha256Schema }).optional(),
});

const RECORD_MAX_BYTES = 4 * 1024;

/**
 * The record at `recordPath` when it says its partial can be resumed (valid, named for its file, some
 * bytes verified); undefined otherwise. For readers outside a copy (the sweep of dead attempts' leftovers),
 * which only need to know whether to leave the pair for a later attempt.
 */
export async function readResumableRecord(
  recordPath: string,
  imageId: string,
  attemptId: string,
): Promise<PartialRecord | undefined> {
  const read = await readJsonFile(recordPath, partialRecordSchema, RECORD_MAX_BYTES, (record) =>
    record.imageId !== imageId || record.attemptId !== attemptId ? 'named for another attempt' : undefined,
  );
  return read.value?.verified && read.value.verified.bytes > 0 ? read.value : undefined;
}

/** Where a copy starts: a fresh partial (bytes 0) or a dead attempt's, adopted. */
export interface PartialStart {
  handle: FileHandle;
  /**
   * Bytes already in the partial, by its record; the copy continues from here once the copier has
   * re-hashed them against `prefixSha256` (StreamCopyOptions.start), where it runs.
   */
  bytes: number;
  /** The sha256 its record names for those bytes (set when bytes > 0). */
  prefixSha256?: string;
  /** The dead attempt whose partial was adopted. */
  resumedFrom?: string;
}

/**
 * The bookkeeping of one copy's partial file in the destination's tmp/: the record written before the
 * bytes, the checkpoints, and the adoption of a dead attempt's partial. The caller holds the destination's
 * exclusive lock: any other partial of the image is then a dead or aborted attempt's.
 */
export class PartialCopy {
  readonly partialPath: string;
  private readonly recordPath: string;
  private readonly record: PartialRecord;

  constructor(
    private readonly store: StoreContext,
    private readonly destination: NodeLayout,
    private readonly imageId: string,
    private readonly tag: string,
    expected: { sha256: string; size: number },
    sourceNode: string | undefined,
    private readonly context: IoContext,
  ) {
    this.partialPath = store.layout.tmpPath(destination, imageId, tag);
    this.recordPath = store.layout.partialRecordPath(destination, imageId, tag);
    this.record = {
      v: 1,
      imageId,
      attemptId: tag,
      sha256: expected.sha256,
      size: expected.size,
      ...(sourceNode === undefined ? {} : { source: { node: sourceNode } }),
      createdAt: new Date().toISOString(),
    };
  }

  /**
   * Adopts the best resumable partial of a dead attempt (re-hashed; a lying one is discarded), else starts
   * from zero; then removes every other partial of the image. With `resume` false nothing is adopted and
   * nothing removed (the caller cleared the leftovers).
   */
  async start(resume: boolean): Promise<PartialStart> {
    let adopted: PartialStart | undefined;
    if (resume) {
      for (const candidate of await this.candidates()) {
        adopted = await this.adopt(candidate);
        if (adopted) break;
      }
      await this.removeOthers();
    }
    if (adopted) return adopted;
    await this.writeRecord(this.record);
    let handle: FileHandle;
    try {
      // Readable too: a copy from several holders hashes the whole image back from this file.
      handle = await fsp.open(this.partialPath, 'wx+', 0o644);
    } catch (error) {
      if (isErrno(error, 'EEXIST')) {
        throw new ReasonError(
          'IO_ERROR',
          `${this.context.what}: a partial copy of attempt ${this.tag} already exists; attempt ids must be unique (removeLeftoverTmp clears dead attempts)`,
        );
      }
      throw mapIoError(error, this.context, 'creating the partial copy');
    }
    return { handle, bytes: 0 };
  }

  /**
   * The adopted partial's prefix did not re-hash to its record (the copier said so): its bytes are thrown
   * away and the same file starts again from zero, recorded with nothing verified.
   */
  async restartFromZero(handle: FileHandle, adopted: PartialStart): Promise<void> {
    this.reject(
      this.store.layout.tmpPath(this.destination, this.imageId, adopted.resumedFrom ?? this.tag),
      `its first ${adopted.bytes} bytes do not have the sha256 its record names`,
    );
    await io(this.context, 'cutting the partial copy', () => handle.truncate(0));
    await this.writeRecord(this.record);
  }

  /** Makes the first `bytes` resumable: durable first, then recorded with their sha256. */
  async checkpoint(handle: FileHandle, bytes: number, prefixSha256: string): Promise<void> {
    // Without fsync a crash of the machine (not of the process) could leave fewer or other bytes than recorded.
    if (this.store.fsync) await io(this.context, 'fsync of the partial copy', () => handle.sync());
    await this.writeRecord({ ...this.record, verified: { bytes, sha256: prefixSha256 } });
  }

  /** Removes the partial and its record (a failed copy that cannot be resumed). Never throws. */
  async discard(): Promise<void> {
    await this.store.discard(this.partialPath);
    await this.store.discard(this.recordPath);
  }

  /** Removes the record once the partial was published (renamed away). Never throws. */
  async forgetRecord(): Promise<void> {
    await this.store.discard(this.recordPath);
  }

  /** Records of other attempts of this image in tmp/, the most advanced first. */
  private async candidates(): Promise<Array<{ tag: string; recordPath: string }>> {
    const found: Array<{ tag: string; recordPath: string; verifiedBytes: number }> = [];
    for (const name of await this.tmpNames()) {
      const parsed = parseTmpName(name);
      // Another image's files are another lock's: a copy of it may be writing them right now.
      if (parsed?.imageId !== this.imageId || !parsed.tag.endsWith(RECORD_TAG_SUFFIX)) continue;
      const tag = parsed.tag.slice(0, -RECORD_TAG_SUFFIX.length);
      if (tag === this.tag || !holderIdSchema.safeParse(tag).success) continue;
      const recordPath = path.join(this.destination.tmp, name);
      const read = await io(this.context, 'reading a partial copy record', () =>
        this.readRecord(recordPath, tag),
      );
      if (read.value === undefined) {
        if (read.invalid !== undefined) this.reject(recordPath, read.invalid);
        continue;
      }
      const record = read.value;
      const problem =
        record.sha256 !== this.record.sha256
          ? `it is a partial of sha256 ${record.sha256}, this copy is of ${this.record.sha256}`
          : record.size !== this.record.size
            ? `it is a partial of ${record.size} bytes, this copy is of ${this.record.size}`
            : !record.verified || record.verified.bytes === 0
              ? undefined // nothing verified yet: nothing to resume, not a lie
              : record.verified.bytes > record.size
                ? `verified.bytes ${record.verified.bytes} exceeds the size ${record.size}`
                : undefined;
      if (problem !== undefined) this.reject(recordPath, problem);
      else if (record.verified && record.verified.bytes > 0)
        found.push({ tag, recordPath, verifiedBytes: record.verified.bytes });
    }
    return found.sort((a, b) => b.verifiedBytes - a.verifiedBytes);
  }

  /**
   * Takes a dead attempt's partial over by copying its recorded prefix into a partial of this attempt's own:
   * a new file, never the dead attempt's. Its writer may only be paused or partitioned, with writes issued
   * before that still to land through its open descriptor; they land in its file, which is removed, never
   * in the one this copy hashes and publishes (a rename would keep the inode, and so the writer's
   * descriptor). Whether the prefix is what the record says is checked by the copier, which re-hashes it
   * once where the copy runs (restartFromZero when it lies). Undefined when the files do not fit the record.
   */
  private async adopt(candidate: { tag: string; recordPath: string }): Promise<PartialStart | undefined> {
    const read = await io(this.context, 'reading a partial copy record', () =>
      this.readRecord(candidate.recordPath, candidate.tag),
    );
    const verified = read.value?.verified;
    if (!verified) return undefined;
    const theirs = this.store.layout.tmpPath(this.destination, this.imageId, candidate.tag);
    let source: FileHandle;
    try {
      const stat = await fsp.lstat(theirs);
      if (!stat.isFile()) return this.reject(theirs, 'not a regular file');
      if (stat.size < verified.bytes)
        return this.reject(
          theirs,
          `${stat.size} bytes, fewer than the ${verified.bytes} its record verified`,
        );
      source = await this.store.openOthersPartial(theirs);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return this.reject(candidate.recordPath, 'its partial file is missing');
      throw mapIoError(error, this.context, 'adopting a partial copy');
    }
    let handle: FileHandle | undefined;
    try {
      // Nothing verified until the prefix is copied and durable: a crash before leaves theirs to resume.
      await this.writeRecord(this.record);
      handle = await io(this.context, 'creating the partial copy', () =>
        fsp.open(this.partialPath, 'wx+', 0o644),
      );
      const copied = await copyPrefix(source, handle, verified.bytes, this.context);
      if (copied < verified.bytes)
        return this.reject(
          theirs,
          `it ended at ${copied} bytes, before the ${verified.bytes} its record verified`,
        );
      if (this.store.fsync) await io(this.context, 'fsync of the partial copy', () => handle!.sync());
      await this.writeRecord({ ...this.record, verified });
      const adopted = {
        handle,
        bytes: verified.bytes,
        prefixSha256: verified.sha256,
        resumedFrom: candidate.tag,
      };
      handle = undefined;
      return adopted;
    } finally {
      await this.store.closeQuietly(source, theirs);
      if (handle) {
        await this.store.closeQuietly(handle, this.partialPath);
        await this.store.discard(this.partialPath);
      }
    }
  }

  private reject(file: string, reason: string): undefined {
    this.store.onWarning(`partial copy ${file} is not resumed (removed instead): ${reason}`);
    return undefined;
  }

  private readRecord(recordPath: string, tag: string) {
    return readJsonFile(recordPath, partialRecordSchema, RECORD_MAX_BYTES, (record) =>
      record.imageId !== this.imageId
        ? `imageId: is ${JSON.stringify(record.imageId)}, the file is named for ${JSON.stringify(this.imageId)}`
        : record.attemptId !== tag
          ? `attemptId: is ${JSON.stringify(record.attemptId)}, the file is named for ${JSON.stringify(tag)}`
          : undefined,
    );
  }

  private async writeRecord(record: PartialRecord): Promise<void> {
    await io(this.context, 'writing the partial copy record', () =>
      writeFileAtomic({
        tmpPath: this.store.layout.tmpPath(this.destination, this.imageId, uniqueTag('meta')),
        finalPath: this.recordPath,
        finalDir: this.destination.tmp,
        data: JSON.stringify(record) + '\n',
        fsync: this.store.fsync,
        discard: (tmpPath) => this.store.discard(tmpPath),
      }),
    );
  }

  /** Every partial file and record of this image except this attempt's own. */
  private async removeOthers(): Promise<void> {
    const own = new Set([path.basename(this.partialPath), path.basename(this.recordPath)]);
    for (const name of await this.tmpNames()) {
      if (own.has(name) || parseTmpName(name)?.imageId !== this.imageId) continue;
      const file = path.join(this.destination.tmp, name);
      const stat = await fsp.lstat(file).catch((error: unknown) => {
        if (isErrno(error, 'ENOENT')) return undefined;
        throw mapIoError(error, this.context, `stat of ${name}`);
      });
      if (stat?.isFile()) await io(this.context, `removing ${name}`, () => fsp.rm(file, { force: true }));
    }
  }

  private tmpNames(): Promise<string[]> {
    return readFolderOrEmpty(this.destination.tmp, this.context, 'listing partial copies');
  }
}

/**
 * Copies the first `bytes` of `from` into `to`; the bytes copied (fewer when `from` ends or goes first:
 * its old holder may remove it at any time). Errors writing `to` are this copy's own.
 */
async function copyPrefix(
  from: FileHandle,
  to: FileHandle,
  bytes: number,
  context: IoContext,
): Promise<number> {
  const buffer = Buffer.allocUnsafe(Math.min(COPY_CHUNK_BYTES, Math.max(bytes, 1)));
  let done = 0;
  while (done < bytes) {
    let got: number;
    try {
      ({ bytesRead: got } = await from.read(buffer, 0, Math.min(buffer.length, bytes - done), done));
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return done;
      throw mapIoError(error, context, "reading the dead attempt's partial copy");
    }
    if (got === 0) return done;
    await io(context, 'copying the adopted prefix', () =>
      writeAll({ write: handleWrite(to) }, buffer.subarray(0, got), done),
    );
    done += got;
  }
  return done;
}
