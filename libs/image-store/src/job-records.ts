import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import {
  imageIdSchema,
  isoTimestampSchema,
  jobIdSchema,
  type NodeOutcome,
  nodeIdSchema,
  nodeOutcomeSchema,
  parseField,
  requestIdSchema,
  sha256Schema,
  SUCCESSFUL_NODE_OUTCOMES,
} from '@app/contracts';
import { listNames, makeCellFolder, writeFileOnce } from './durable-fs';
import { isErrno } from './fs-errors';
import { readJsonFile } from './shared-json-file';
import type { StoreContext } from './store-context';

/** Folders beside the node folders; their names cannot be node ids (a node id starts with a letter or digit). */
export const JOBS_FOLDER = '.icc-jobs';
export const CANCELS_FOLDER = '.icc-cancels';

export const jobRecordSchema = z.strictObject({
  v: z.literal(1),
  jobId: jobIdSchema,
  type: z.enum(['precache', 'purge']),
  imageId: imageIdSchema,
  sha256: sha256Schema.optional(),
  forceUnpin: z.boolean().optional(),
  /** The nodes the job works on, resolved once (from `all` and `percent` too) when the job was accepted. */
  nodes: z.array(nodeIdSchema),
  createdAt: isoTimestampSchema,
  createdBy: z.string().max(128),
});
export type JobRecord = z.infer<typeof jobRecordSchema>;

export interface JobStatus {
  record: JobRecord;
  outcomes: NodeOutcome[];
  cancelled: boolean;
  nodesDone: number;
  nodesTotal: number;
  bytesDone: number;
  /** done: every node has an outcome; failed counts the unsuccessful ones among them. */
  state: 'running' | 'done';
  failed: number;
}

const MAX_RECORD_BYTES = 256 * 1024;
const MAX_OUTCOME_BYTES = 8 * 1024;

/**
 * The durable state of pre-cache and purge jobs and of cancels, in the shared folder so that any
 * conductor (and `icc job status` on any host) reads the same:
 * ```
 * <root>/.icc-jobs/<jobId>/job.json          the job as accepted (nodes resolved), written once
 * <root>/.icc-jobs/<jobId>/nodes/<node>.json  a node's final outcome, first writer wins
 * <root>/.icc-jobs/<jobId>/cancelled          the job was cancelled
 * <root>/.icc-cancels/<requestId>            a copy request was cancelled
 * ```
 * Every file is written to a unique temporary name and then hard-linked to its final name: `link` fails
 * with EEXIST when the name exists, so the first writer wins and nobody ever sees a torn file. A node's
 * outcome therefore never changes once written (a redelivered copy answered already-present does not
 * turn a `completed` node into `already-present`).
 */
export class JobRecords {
  constructor(private readonly store: StoreContext) {}

  private jobDir(jobId: string): string {
    return path.join(this.store.root, JOBS_FOLDER, parseField(jobIdSchema, jobId, 'jobId'));
  }

  /** Writes the record unless one exists; returns the record that is on disk (ours or the earlier one). */
  async create(record: JobRecord): Promise<{ record: JobRecord; created: boolean }> {
    const dir = this.jobDir(record.jobId);
    await makeCellFolder(this.store.root, path.join(dir, 'nodes'));
    const created = await this.writeOnce(dir, 'job.json', JSON.stringify(record));
    if (created) return { record, created };
    const existing = await this.read(record.jobId);
    if (!existing) throw new Error(`job ${record.jobId}: job.json exists but cannot be read`);
    return { record: existing, created: false };
  }

  async read(jobId: string): Promise<JobRecord | undefined> {
    const read = await readJsonFile(
      path.join(this.jobDir(jobId), 'job.json'),
      jobRecordSchema,
      MAX_RECORD_BYTES,
    );
    if (read.invalid !== undefined) throw new Error(`job ${jobId}: job.json is invalid: ${read.invalid}`);
    return read.value;
  }

  /** Records a node's final outcome; false when the node already had one (which stays). */
  async recordOutcome(jobId: string, outcome: NodeOutcome): Promise<boolean> {
    const node = parseField(nodeIdSchema, outcome.node, 'node');
    return this.writeOnce(path.join(this.jobDir(jobId), 'nodes'), `${node}.json`, JSON.stringify(outcome));
  }

  async outcome(jobId: string, node: string): Promise<NodeOutcome | undefined> {
    const file = path.join(this.jobDir(jobId), 'nodes', `${parseField(nodeIdSchema, node, 'node')}.json`);
    return (await readJsonFile(file, nodeOutcomeSchema, MAX_OUTCOME_BYTES)).value;
  }

  async outcomes(jobId: string): Promise<NodeOutcome[]> {
    const dir = path.join(this.jobDir(jobId), 'nodes');
    const names = await fsp.readdir(dir).catch((error: unknown) => {
      if (isErrno(error, 'ENOENT')) return [] as string[];
      throw error;
    });
    const out: NodeOutcome[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      const read = await readJsonFile(path.join(dir, name), nodeOutcomeSchema, MAX_OUTCOME_BYTES);
      if (read.value) out.push(read.value);
    }
    return out;
  }

  /** Marks the job cancelled; false when there is no such job. */
  async cancel(jobId: string): Promise<boolean> {
    if (!(await this.read(jobId))) return false;
    await this.writeOnce(this.jobDir(jobId), 'cancelled', new Date().toISOString());
    return true;
  }

  async isCancelled(jobId: string): Promise<boolean> {
    return exists(path.join(this.jobDir(jobId), 'cancelled'));
  }

  async status(jobId: string): Promise<JobStatus | undefined> {
    const record = await this.read(jobId);
    if (!record) return undefined;
    const wanted = new Set(record.nodes);
    const outcomes = (await this.outcomes(jobId)).filter((o) => wanted.has(o.node));
    const failed = outcomes.filter((o) => !SUCCESSFUL_NODE_OUTCOMES.includes(o.outcome)).length;
    return {
      record,
      outcomes,
      cancelled: await this.isCancelled(jobId),
      nodesDone: outcomes.length,
      nodesTotal: record.nodes.length,
      bytesDone: outcomes.reduce((sum, o) => sum + (o.bytes ?? 0), 0),
      state: outcomes.length >= record.nodes.length ? 'done' : 'running',
      failed,
    };
  }

  /** Job ids, newest first (by the record's mtime), at most `limit`. */
  async list(limit = 50): Promise<string[]> {
    const dir = path.join(this.store.root, JOBS_FOLDER);
    const names = await fsp.readdir(dir).catch((error: unknown) => {
      if (isErrno(error, 'ENOENT')) return [] as string[];
      throw error;
    });
    const dated: { id: string; mtimeMs: number }[] = [];
    for (const id of names.filter((n) => jobIdSchema.safeParse(n).success)) {
      const stat = await fsp.stat(path.join(dir, id, 'job.json')).catch(() => undefined);
      if (stat) dated.push({ id, mtimeMs: stat.mtimeMs });
    }
    return dated
      .sort((a, b) => b.mtimeMs - a.mtimeMs || a.id.localeCompare(b.id))
      .slice(0, limit)
      .map((d) => d.id);
  }

  /** Marks a copy request cancelled (whoever takes it next answers CANCELLED); false when it already was. */
  async cancelRequest(requestId: string): Promise<boolean> {
    const dir = path.join(this.store.root, CANCELS_FOLDER);
    await makeCellFolder(this.store.root, dir);
    return this.writeOnce(dir, parseField(requestIdSchema, requestId, 'requestId'), new Date().toISOString());
  }

  async isRequestCancelled(requestId: string): Promise<boolean> {
    return exists(
      path.join(this.store.root, CANCELS_FOLDER, parseField(requestIdSchema, requestId, 'requestId')),
    );
  }

  /**
   * Removes what jobs and cancels left once nothing can need it: a finished job (every node has its
   * outcome) whose last change is older than `olderThanMs`, a job folder without a readable record that
   * old (a crash between its mkdir and its record), and cancel markers that old. A running job is never
   * removed, however old. Ages are judged by mtimes against this host's clock: keep `olderThanMs` far above
   * any clock skew between hosts (the configuration takes at least a day).
   */
  async removeFinished(olderThanMs: number): Promise<{ jobs: number; cancels: number }> {
    const cutoff = Date.now() - olderThanMs;
    const removed = { jobs: 0, cancels: 0 };
    const jobsDir = path.join(this.store.root, JOBS_FOLDER);
    for (const id of (await listNames(jobsDir)).filter((n) => jobIdSchema.safeParse(n).success)) {
      const dir = path.join(jobsDir, id);
      if ((await newestMtime(dir, path.join(dir, 'nodes'), path.join(dir, 'job.json'))) > cutoff) continue;
      const status = await this.status(id).catch(() => undefined);
      if (status?.state === 'running') continue;
      await fsp.rm(dir, { recursive: true, force: true });
      removed.jobs += 1;
    }
    const cancelsDir = path.join(this.store.root, CANCELS_FOLDER);
    for (const name of await listNames(cancelsDir)) {
      const file = path.join(cancelsDir, name);
      if ((await newestMtime(file)) > cutoff) continue;
      await fsp.rm(file, { force: true });
      removed.cancels += 1;
    }
    return removed;
  }

  private writeOnce(dir: string, name: string, data: string): Promise<boolean> {
    return writeFileOnce(dir, name, data, this.store.fsync);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fsp.access(file);
    return true;
  } catch {
    return false;
  }
}

/** The newest mtime among `paths` (missing ones count as 0). */
async function newestMtime(...paths: string[]): Promise<number> {
  let newest = 0;
  for (const p of paths) newest = Math.max(newest, (await fsp.stat(p).catch(() => undefined))?.mtimeMs ?? 0);
  return newest;
}
