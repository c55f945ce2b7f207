/*
 * BENCHMARK ONLY: a per-node read bandwidth limit, made by wrapping `fs.promises.open` in this process.
 * Reads of image files under `<root>/<node>/images/` (not meta files) go through one token bucket per
 * node, shared by every reader of that node: a node's disk or NIC as the bottleneck a real cell has.
 * Production code paths are untouched; only a benchmark process installs this (and uninstalls it).
 */
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

/** A pipe of `bytesPerSecond`: each read waits for its turn, first come, first served. */
export class NodePipe {
  private nextFreeMs = 0;
  activeReaders = 0;
  peakReaders = 0;
  bytes = 0;

  constructor(private readonly bytesPerSecond: number) {}

  async take(bytes: number): Promise<void> {
    const now = performance.now();
    const start = Math.max(now, this.nextFreeMs);
    this.nextFreeMs = start + (bytes / this.bytesPerSecond) * 1000;
    this.bytes += bytes;
    const wait = this.nextFreeMs - now;
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

export interface ReadThrottle {
  /** Per node: peak concurrent readers and bytes read since install (or the last reset). */
  stats(): Record<string, { peakReaders: number; bytes: number }>;
  reset(): void;
  uninstall(): void;
}

export function installReadThrottle(root: string, bytesPerSecond: number): ReadThrottle {
  const promises = fs.promises as { open: typeof fs.promises.open };
  const original = promises.open;
  const pipes = new Map<string, NodePipe>();
  const resolvedRoot = path.resolve(root);
  const pipeOf = (node: string) => {
    let pipe = pipes.get(node);
    if (!pipe) pipes.set(node, (pipe = new NodePipe(bytesPerSecond)));
    return pipe;
  };
  promises.open = async function open(
    file: fs.PathLike,
    flags?: string | number,
    mode?: fs.Mode,
  ): Promise<FileHandle> {
    const handle = await original(file, flags, mode);
    const relative = path.relative(resolvedRoot, path.resolve(String(file))).split(path.sep);
    const readOnly =
      flags === undefined ||
      flags === 'r' ||
      (typeof flags === 'number' && (flags & 3) === fs.constants.O_RDONLY);
    if (relative.length !== 3 || relative[1] !== 'images' || relative[2]!.endsWith('.meta.json') || !readOnly)
      return handle;
    const pipe = pipeOf(relative[0]!);
    pipe.activeReaders++;
    pipe.peakReaders = Math.max(pipe.peakReaders, pipe.activeReaders);
    const read = handle.read.bind(handle) as (
      ...args: unknown[]
    ) => Promise<fs.promises.FileReadResult<NodeJS.ArrayBufferView>>;
    const close = handle.close.bind(handle);
    Object.assign(handle, {
      read: async (...args: unknown[]) => {
        const result = await read(...args);
        await pipe.take(result.bytesRead);
        return result;
      },
      close: async () => {
        pipe.activeReaders--;
        return close();
      },
    });
    return handle;
  } as typeof fs.promises.open;
  return {
    stats: () =>
      Object.fromEntries(
        [...pipes].map(([node, p]) => [node, { peakReaders: p.peakReaders, bytes: p.bytes }]),
      ),
    reset: () => pipes.clear(),
    uninstall: () => {
      promises.open = original;
    },
  };
}
