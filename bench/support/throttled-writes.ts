/*
 * BENCHMARK ONLY: a per-node write bandwidth limit (a destination's disk or NIC), made by wrapping
 * `fs.promises.open` in this process for partial copies under `<root>/<node>/tmp/`. Production code
 * paths are untouched; only a benchmark process installs this (and uninstalls it).
 */
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { NodePipe } from './throttled-reads';

export function installWriteThrottle(root: string, bytesPerSecond: number): { uninstall(): void } {
  const promises = fs.promises as { open: typeof fs.promises.open };
  const original = promises.open;
  const pipes = new Map<string, NodePipe>();
  const resolvedRoot = path.resolve(root);
  promises.open = async function open(
    file: fs.PathLike,
    flags?: string | number,
    mode?: fs.Mode,
  ): Promise<FileHandle> {
    const handle = await original(file, flags, mode);
    const relative = path.relative(resolvedRoot, path.resolve(String(file))).split(path.sep);
    if (relative.length !== 3 || relative[1] !== 'tmp' || !relative[2]!.endsWith('.part')) return handle;
    const node = relative[0]!;
    let pipe = pipes.get(node);
    if (!pipe) pipes.set(node, (pipe = new NodePipe(bytesPerSecond)));
    const write = handle.write.bind(handle) as (...args: unknown[]) => Promise<{ bytesWritten: number }>;
    Object.assign(handle, {
      write: async (...args: unknown[]) => {
        const result = await write(...args);
        await pipe.take(result.bytesWritten);
        return result;
      },
    });
    return handle;
  } as typeof fs.promises.open;
  return {
    uninstall: () => {
      promises.open = original;
    },
  };
}
