import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { HEADER_REASON, REASON_CODES } from '@app/contracts';
import type { ChildProcessPool } from '../support/child-processes';
import {
  type DeadLetter,
  type Result,
  ResultsTap,
  errorLines,
  publishConfirmed,
  takeDeadLetters,
} from '../support/conductor-harness';
import { ConductorProcess } from '../support/conductor-process';
import { sha256OfFile } from '../support/image-store-fixtures';
import { waitFor } from '../support/async';
import { TestCell } from '../support/test-cell';
import type { Cleanups } from './campaign-kit';
import { FinalPathsWatcher, listTree, heldLockEntries } from '../support/cell-observers';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/*
 * Campaign 3: file-system faults under a running conductor, one scenario per test, each with its own cell:
 * a destination that runs out of space (a small tmpfs mounted at its node folder), a read-only destination
 * (the node folder bind-mounted onto itself and remounted read-only), a source altered or truncated while
 * it is being copied, a lock folder removed by hand during a copy. Mounting needs root (CI runs as root).
 */

export interface FsScenario {
  cell: TestCell;
  conductor: ConductorProcess;
  tap: ResultsTap;
  watcher: FinalPathsWatcher;
  /** sha256 of every seeded image before the scenario, by `<node>/<imageId>`. */
  sources: Map<string, { sha256: string; size: number }>;
}

/** A cell with `nodes`, images seeded as asked, `prepare` run before the conductor starts, and a conductor. */
export async function startScenario(
  pool: ChildProcessPool<unknown>,
  cleanups: Cleanups,
  options: {
    nodes: string[];
    images: Array<{ node: string; imageId: string; bytes: number }>;
    prepare?: (cell: TestCell) => Promise<void>;
    env?: Record<string, string>;
  },
): Promise<FsScenario> {
  const cell = await TestCell.create({ nodes: options.nodes });
  cleanups.add('cell', () => cell.cleanup());
  const sources = new Map<string, { sha256: string; size: number }>();
  for (const image of options.images)
    sources.set(`${image.node}/${image.imageId}`, await cell.seed(image.node, image.imageId, image.bytes));
  await options.prepare?.(cell);
  const tap = await ResultsTap.open(cell.topology);
  cleanups.add('results tap', () => tap.close());
  const watcher = new FinalPathsWatcher(5);
  cleanups.add('final-path watcher', () => watcher.stop());
  const conductor = await ConductorProcess.start(
    pool,
    cell.conductorEnv({ CONDUCTOR_ID: 'fs-faults', ...options.env }),
    120_000,
  ).ready();
  return { cell, conductor, tap, watcher, sources };
}

/** Mounts a tmpfs of `size` (e.g. '8m') at `dir`; unmounted by the clean-up (before the cell is removed). */
export async function mountTmpfs(cleanups: Cleanups, dir: string, size: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await mount(['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  cleanups.add(`unmount ${dir}`, () => unmount(dir));
}

/** Makes `dir` read-only: a bind mount onto itself, remounted ro. */
export async function mountReadOnly(cleanups: Cleanups, dir: string): Promise<void> {
  await mount(['--bind', dir, dir]);
  cleanups.add(`unmount ${dir}`, () => unmount(dir));
  await mount(['-o', 'remount,ro,bind', dir]);
}

async function mount(args: string[]): Promise<void> {
  try {
    await run('mount', args);
  } catch (error) {
    throw new Error(
      `mount ${args.join(' ')} failed (the file-system campaign needs root): ${(error as Error).message}`,
    );
  }
}

async function unmount(dir: string): Promise<void> {
  try {
    await run('umount', [dir]);
  } catch {
    await run('umount', ['-l', dir]); // busy: detach now, freed when the last user lets go
  }
}

/** Publishes one request (confirmed); the tap collects its results. */
export async function request(cell: TestCell, body: Record<string, unknown>): Promise<string> {
  await publishConfirmed(cell.topology.requestQueue.name, [
    { body: { v: 1, ...body }, messageId: String(body.requestId) },
  ]);
  return String(body.requestId);
}

/**
 * Runs `act` at the moment a copy into `node` is under way: the conductor is frozen (SIGSTOP, far below
 * the stale time) as soon as a partial file with bytes in it shows in the node's tmp folder, `act` runs,
 * and the conductor resumes. Returns the partial file's size when frozen.
 */
export async function whileCopying(
  s: FsScenario,
  node: string,
  act: () => Promise<void>,
  timeoutMs = 30_000,
): Promise<number> {
  const dir = path.join(s.cell.root, node, 'tmp');
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    for (const name of await fsp.readdir(dir).catch(() => [] as string[])) {
      if (name.includes('~meta-')) continue;
      const stat = await fsp.stat(path.join(dir, name)).catch(() => undefined);
      if (!stat || stat.size === 0) continue;
      s.conductor.signal('SIGSTOP');
      try {
        const frozenAt = (await fsp.stat(path.join(dir, name)).catch(() => stat)).size;
        await act();
        return frozenAt;
      } finally {
        s.conductor.signal('SIGCONT');
      }
    }
    if (performance.now() > deadline)
      throw new Error(`no copy into ${node} under way within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * What every scenario must leave: the sources untouched (but `altered`), no partial copy anywhere, no
 * lock held, the final-path reader never saw a partial image, the conductor alive without INTERNAL errors.
 * Returns the problems found.
 */
export async function commonChecks(s: FsScenario, options: { altered?: string[] } = {}): Promise<string[]> {
  const problems: string[] = [];
  await s.watcher.stop();
  for (const [key, seed] of s.sources) {
    if (options.altered?.includes(key)) continue;
    const [node, imageId] = key.split('/') as [string, string];
    const sha256 = await sha256OfFile(s.cell.store.entries.imagePath(node, imageId));
    if (sha256 !== seed.sha256) problems.push(`source ${key} changed: ${sha256}`);
  }
  problems.push(...s.watcher.problems.map((p) => `final-path reader: ${p}`));
  problems.push(...(await s.cell.tmpLeftovers()).map((t) => `partial file left: ${t}`));
  problems.push(...(await heldLockEntries(s.cell.root)).map((l) => `lock left: ${l}`));
  if (s.conductor.child.process.exitCode !== null || s.conductor.child.process.signalCode !== null)
    problems.push('the conductor exited');
  problems.push(
    ...s.conductor
      .logs()
      .filter((l) => l.msg === 'unexpected error in a copy')
      .map((l) => `INTERNAL: ${JSON.stringify(l)}`),
  );
  problems.push(...errorLines([s.conductor]).map((l) => `error log line: ${l}`));
  return problems;
}

/** Every result of a request, in order, once its final one arrived. */
export async function resultsOf(s: FsScenario, requestId: string, timeoutMs = 60_000): Promise<Result[]> {
  await s.tap.waitForFinal([requestId], timeoutMs);
  return s.tap.of(requestId);
}

/** Dead letters of the cell, waiting until `count` are there (then a little longer, to catch extra ones). */
export async function deadLetters(s: FsScenario, count: number): Promise<DeadLetter[]> {
  const taken: DeadLetter[] = [];
  await waitFor(
    async () => {
      taken.push(...(await takeDeadLetters(s.cell.topology)));
      return taken.length >= count;
    },
    `${count} dead letters`,
    15_000,
  );
  await new Promise((r) => setTimeout(r, 300));
  taken.push(...(await takeDeadLetters(s.cell.topology)));
  for (const d of taken)
    if (!(String(d.headers[HEADER_REASON]) in REASON_CODES))
      throw new Error(`dead letter with an unknown reason: ${JSON.stringify(d.headers)}`);
  return taken;
}

/** The files under a node folder (for "nothing published" checks). */
export async function nodeFiles(cell: TestCell, node: string): Promise<string[]> {
  return listTree(path.join(cell.root, node));
}

export const FS_MIB = MiB;
