import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ReasonError, imageIdSchema, sha256Schema } from '@app/contracts';
import { type ImageMeta, ImageStore } from '@app/image-store';
import { MIN_STALE_MS, NodeLockManager, newAttemptId } from '@app/locking';
import { CliError, ExitCode, type ExitCodeValue, UsageError } from '../cli/exit-codes';
import { formatBytes } from '../cli/format';
import { ProgressBoard } from '../cli/progress-board';
import { parseStaleMs } from '../cli/stale-ms-option';
import type { Terminal } from '../cli/terminal';
import { cacheTarget, cliHolderId, parseId, requireRegisteredNode } from './cache-args';

export interface CacheImportOptions {
  cacheRoot?: string;
  imageId?: string;
  sha256?: string;
  json?: boolean;
  staleMs?: string;
  lockWait?: string;
}

export const DEFAULT_IMPORT_LOCK_WAIT_S = 60;

export interface LockedImportRequest {
  store: ImageStore;
  locks: NodeLockManager;
  node: string;
  imageId: string;
  file: string;
  sha256?: string;
  lockWaitMs: number;
  signal?: AbortSignal;
  onProgress?: (phase: 'waiting-for-lock' | 'copying' | 'publishing', bytesDone: number) => void;
}

/**
 * The documented way to put an image into a node's cache (docs/cache-layout.md): under the image's
 * EXCLUSIVE lock on that node (the conductors' own locks, so it is safe beside them), partial copies of
 * dead attempts removed, the file hashed while copied into tmp/, verified against `sha256` when given, the
 * lock checked right before the rename that publishes it. An image already there with that sha256 is kept.
 */
export async function importUnderLock(
  request: LockedImportRequest,
): Promise<{ meta: ImageMeta; alreadyPresent: boolean }> {
  const { store, locks, node, imageId } = request;
  request.onProgress?.('waiting-for-lock', 0);
  const attemptId = newAttemptId();
  const held = await locks.acquire(
    { node, imageId, mode: 'exclusive' },
    { attemptId, timeoutMs: request.lockWaitMs, signal: request.signal },
  );
  try {
    if (request.sha256 !== undefined) {
      const present = await store.copies.verifiedImage(node, imageId, { sha256: request.sha256 });
      if (present) return { meta: present, alreadyPresent: true };
    }
    await store.entries.removeLeftoverTmp(node, imageId);
    const meta = await store.imports.importImage(node, imageId, request.file, {
      attemptId,
      expected: request.sha256 === undefined ? undefined : { sha256: request.sha256 },
      fencingToken: held.fencingToken,
      signal: request.signal ? AbortSignal.any([held.signal, request.signal]) : held.signal,
      onProgress: (done) => request.onProgress?.('copying', done),
      beforeIrreversibleStep: async (step) => {
        if (step === 'publish') request.onProgress?.('publishing', 0);
        await held.assertStillHeld();
      },
    });
    return { meta, alreadyPresent: false };
  } finally {
    await held.release();
  }
}

/** `icc cache import <node> <file> --image-id <id> [--sha256 <hex>]`. */
export async function runCacheImport(
  node: string,
  file: string,
  options: CacheImportOptions,
  term: Terminal,
  signal?: AbortSignal,
): Promise<ExitCodeValue> {
  const { root, nodeId } = cacheTarget(node, options.cacheRoot);
  if (options.imageId === undefined) throw new UsageError('--image-id', 'is required');
  const imageId = parseId(imageIdSchema, options.imageId, '--image-id');
  const sha256 =
    options.sha256 === undefined
      ? undefined
      : parseId(sha256Schema, options.sha256.toLowerCase(), '--sha256');
  const lockWaitMs = parseLockWait(options.lockWait);
  const staleMs = parseStaleMs(options.staleMs, MIN_STALE_MS);
  const source = path.resolve(file);
  const stat = await fsp.stat(source).catch((error: NodeJS.ErrnoException) => {
    throw new UsageError('<file>', `cannot read ${source} (${error.code ?? error.message})`);
  });
  if (!stat.isFile()) throw new UsageError('<file>', `${source} is not a regular file`);

  const store = new ImageStore({ root });
  await requireRegisteredNode(store, root, nodeId);
  const locks = new NodeLockManager({ root, conductorId: cliHolderId(), timings: { staleMs } });
  // --json: one JSON object on stdout and no progress at all (errors still go to stderr).
  const board = new ProgressBoard({
    tty: term.stderrIsTTY && !options.json,
    stream: process.stderr,
    writeLine: (line) => (options.json ? undefined : term.err(line)),
  });
  const label = `${imageId} -> ${nodeId}`;
  board.add(label, label);
  let outcome: { meta: ImageMeta; alreadyPresent: boolean };
  try {
    outcome = await importUnderLock({
      store,
      locks,
      node: nodeId,
      imageId,
      file: source,
      sha256,
      lockWaitMs,
      signal,
      onProgress: (phase, done) =>
        board.update(label, {
          phase,
          bytesDone: phase === 'publishing' ? stat.size : done,
          bytesTotal: stat.size,
        }),
    });
    board.finish(label, outcome.alreadyPresent ? 'already present' : 'imported', true);
  } catch (error) {
    const code = error instanceof ReasonError ? error.code : undefined;
    board.finish(label, `failed${code ? ` (${code})` : ''}`, false);
    if (signal?.aborted) throw new CliError(ExitCode.INTERRUPTED, 'interrupted: nothing was published');
    if (error instanceof ReasonError)
      throw new CliError(ExitCode.FAILED, `import failed (${error.code}): ${error.message}`, {
        cause: error,
      });
    throw error;
  } finally {
    board.stop();
    await locks.releaseAll();
  }
  const { meta, alreadyPresent } = outcome;
  term.out(
    options.json
      ? JSON.stringify({ status: alreadyPresent ? 'already-present' : 'imported', meta })
      : `${alreadyPresent ? 'already present' : 'imported'}: ${meta.imageId} on ${nodeId}, ${formatBytes(meta.size)}, sha256 ${meta.sha256}${sha256 === undefined ? ' (no --sha256 given: computed, not verified)' : ' (verified)'}`,
  );
  return ExitCode.OK;
}

function parseLockWait(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_IMPORT_LOCK_WAIT_S * 1000;
  const seconds = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || seconds <= 0 || seconds > 3600)
    throw new UsageError(
      '--lock-wait',
      `must be a number of seconds above 0, at most 3600 (got ${JSON.stringify(raw)})`,
    );
  return Math.round(seconds * 1000);
}
