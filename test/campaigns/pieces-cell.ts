import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { type ChannelModel, connect } from 'amqplib';
import type { CellTopology } from '@app/contracts';
import { LITTER_PREFIXES, SWARMS_FOLDER } from '@app/image-store';
import { inspectLocks } from '@app/locking';
import { AMQP_URL } from '../support/rabbitmq';
import { listTree, lockLeftovers, tmpLeftovers } from '../support/cell-observers';

/*
 * What the pieces campaign (pieces.ts) reads and does in the cell's folder, written from the documented
 * formats (docs/copies.md, "Reading from copies in progress") rather than from the product's parsers: the
 * records of copies in progress, their partial files, the damage done to one, and the litter oracle.
 */

/** One record of a copy in progress, as the campaign reads it. */
export interface CopyInProgress {
  node: string;
  attemptId: string;
  pieceCount: number;
  pieceBytes: number;
  /** Announced (verified) pieces, by index. */
  announced: number[];
  /** The conductor holding that copy's destination lock, when one was seen holding it. */
  conductorId?: string;
}

/** The records of `imageId`'s copies in progress (a record being renamed or unreadable is left out). */
export async function copiesInProgress(root: string, imageId: string): Promise<CopyInProgress[]> {
  const folder = path.join(root, SWARMS_FOLDER, imageId);
  const names = await fsp.readdir(folder).catch(() => [] as string[]);
  const out: CopyInProgress[] = [];
  for (const name of names) {
    const named = /^([^~.][^~]*)~([^~]+)\.json$/.exec(name);
    if (!named) continue;
    const text = await fsp.readFile(path.join(folder, name), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    let record: { pieceCount?: unknown; pieceBytes?: unknown; have?: unknown };
    try {
      record = JSON.parse(text) as typeof record;
    } catch {
      continue; // a reader may see a record replaced between its listing and its read: never a torn one
    }
    if (typeof record.pieceCount !== 'number' || typeof record.have !== 'string') continue;
    const have = Buffer.from(record.have, 'base64');
    const announced: number[] = [];
    for (let i = 0; i < record.pieceCount; i++) if ((have[i >> 3]! & (1 << (i & 7))) !== 0) announced.push(i);
    out.push({
      node: named[1]!,
      attemptId: named[2]!,
      pieceCount: record.pieceCount,
      pieceBytes: Number(record.pieceBytes),
      announced,
    });
  }
  return out;
}

/** Copies in progress that have some of their pieces but not all: a strike now lands mid-fan-out. */
export function midPiece(copies: CopyInProgress[]): CopyInProgress[] {
  return copies.filter((c) => c.announced.length > 0 && c.announced.length < c.pieceCount);
}

/**
 * The copies in progress of `imageId` with the conductor that holds each one's destination lock. Only
 * those copies' keys are looked at, all at once: a look over the whole cell's locks took seconds on
 * GlusterFS, about a copy's whole time, and the strikes found no moment mid-fan-out.
 */
export async function withHolders(
  root: string,
  staleMs: number,
  imageId: string,
  copies: CopyInProgress[],
): Promise<CopyInProgress[]> {
  return Promise.all(
    copies.map(async (c) => {
      const { entries } = await inspectLocks(root, { staleMs, node: c.node, imageId });
      const lock = entries.find((e) => e.mode === 'exclusive' && e.holder?.attemptId === c.attemptId);
      return lock?.holder ? { ...c, conductorId: lock.holder.conductorId } : c;
    }),
  );
}

export function partialPath(root: string, node: string, imageId: string, attemptId: string): string {
  return path.join(root, node, 'tmp', `${imageId}~${attemptId}.part`);
}

/** What the damage did: the pieces flipped, and the first piece not yet right on disk (read-back bound). */
export interface Damage {
  node: string;
  attemptId: string;
  pieces: number[];
  firstNotOnDisk: number;
}

/**
 * Flips one byte in up to `max` announced pieces of a copy in progress, each beyond the first piece not yet
 * right on disk: the copy's own whole-image hash (read back front to back over its verified prefix) has
 * not reached them, so the damage is what a reader meets, and what the copy itself finds when its
 * read-back gets there; flipping a piece it has hashed already would corrupt its image behind every check,
 * a fault outside the model (a disk that changes written bytes). The caller freezes the copy's conductor
 * meanwhile (nothing on disk moves). `digests`: the image's piece sha256s; `pick` chooses among pieces.
 */
export async function damagePartial(
  file: string,
  copy: CopyInProgress,
  digests: string[],
  max: number,
  pick: (candidates: number[]) => number,
  offsetIn: (pieceLength: number) => number,
): Promise<Damage | string> {
  const handle = await fsp.open(file, 'r+').catch((error: Error) => error);
  if (handle instanceof Error) return `partial not opened: ${handle.message}`;
  try {
    const size = (await handle.stat()).size;
    let firstNotOnDisk = digests.length;
    const buffer = Buffer.allocUnsafe(copy.pieceBytes);
    for (let i = 0; i < digests.length; i++) {
      const start = i * copy.pieceBytes;
      const { bytesRead } =
        start < size ? await handle.read(buffer, 0, copy.pieceBytes, start) : { bytesRead: 0 };
      const sha = createHash('sha256').update(buffer.subarray(0, bytesRead)).digest('hex');
      if (sha !== digests[i]) {
        firstNotOnDisk = i;
        break;
      }
    }
    const candidates = copy.announced.filter((i) => i > firstNotOnDisk);
    if (candidates.length === 0)
      return `no announced piece beyond ${firstNotOnDisk} (announced ${copy.announced.join(',')})`;
    const pieces: number[] = [];
    while (pieces.length < max && candidates.length > 0) {
      const index = pick(candidates);
      candidates.splice(candidates.indexOf(index), 1);
      const length = Math.min(copy.pieceBytes, size - index * copy.pieceBytes);
      const at = index * copy.pieceBytes + offsetIn(length);
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, at);
      byte[0]! ^= 0xa5;
      await handle.write(byte, 0, 1, at);
      pieces.push(index);
    }
    return {
      node: copy.node,
      attemptId: copy.attemptId,
      pieces: pieces.sort((a, b) => a - b),
      firstNotOnDisk,
    };
  } finally {
    await handle.close();
  }
}

/**
 * Litter once the cell is idle: partial files, lock entries still held, anything in `.icc-swarms/` (a
 * record or an image folder), and files a network file system hides for open-but-removed ones
 * (`.fuse_hidden*`, `.nfs*`) anywhere in the cell.
 */
export async function litter(root: string, staleMs: number): Promise<string[]> {
  const swarms = await listTree(path.join(root, SWARMS_FOLDER), 3);
  const hidden = (await listTree(root, 5)).filter((p) =>
    LITTER_PREFIXES.some((prefix) => path.basename(p).startsWith(prefix)),
  );
  return [
    ...(await tmpLeftovers(root)),
    ...(await lockLeftovers(root, staleMs)).map(
      (l) => `lock ${l.node}/${l.imageId} ${l.mode} by ${l.conductorId ?? '?'} (${l.attemptId ?? '?'})`,
    ),
    ...swarms.map((s) => `${SWARMS_FOLDER}/${s}`),
    ...hidden.map((h) => `hidden file ${h}`),
  ];
}

/** A job event as the conductors publish it on the events exchange (`job.<jobId>`). */
export interface JobEvent {
  type: string;
  jobId: string;
  nodes?: Array<{ node: string; outcome: string; reason?: string }>;
}

/** Every job event of a cell, through an exclusive queue of the test's own bound to `job.#`. */
export class JobEventsTap {
  readonly events: JobEvent[] = [];

  private constructor(private readonly connection: ChannelModel) {}

  static async open(topology: CellTopology): Promise<JobEventsTap> {
    const connection = await connect(AMQP_URL);
    const tap = new JobEventsTap(connection);
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
    await channel.bindQueue(queue, topology.eventsExchange.name, 'job.#');
    await channel.consume(
      queue,
      (m) => {
        if (m) tap.events.push(JSON.parse(m.content.toString()) as JobEvent);
      },
      { noAck: true },
    );
    return tap;
  }

  results(jobId: string): JobEvent[] {
    return this.events.filter((e) => e.jobId === jobId && e.type === 'job-result');
  }

  async close(): Promise<void> {
    await this.connection.close().catch(() => undefined);
  }
}
