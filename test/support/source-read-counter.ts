/**
 * An instrumented source for tests: counts the bytes this process reads from one file, whoever reads it,
 * by wrapping `fs.promises.open`. The running total is written to `countFile` after every read,
 * synchronously, so that it is there even when the process is SIGKILLed a moment later.
 */
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';

export function countReadsOf(file: string, countFile: string): void {
  const promises = fs.promises as { open: typeof fs.promises.open };
  const original = promises.open;
  const watched = path.resolve(file);
  let total = 0;
  fs.writeFileSync(countFile, '0');
  promises.open = async function open(
    target: fs.PathLike,
    flags?: string | number,
    mode?: fs.Mode,
  ): Promise<FileHandle> {
    const handle = await original(target, flags, mode);
    if (path.resolve(String(target)) !== watched) return handle;
    const read = handle.read.bind(handle) as (
      ...args: unknown[]
    ) => Promise<fs.promises.FileReadResult<NodeJS.ArrayBufferView>>;
    Object.assign(handle, {
      read: async (...args: unknown[]) => {
        const result = await read(...args);
        total += result.bytesRead;
        fs.writeFileSync(countFile, String(total));
        return result;
      },
    });
    return handle;
  } as typeof fs.promises.open;
}
