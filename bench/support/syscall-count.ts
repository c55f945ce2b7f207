/*
 * Counts a process's file-system system calls with strace (attached to the running process and all its
 * threads, so libuv's file-system pool is included): the calls that name a path (strace's %file class:
 * openat, statx, newfstatat, mkdir, rename, unlink, utimensat, ...) plus getdents64 (directory listings).
 * Reads and writes of open files are left out: a metadata call is what costs a network file server a
 * round trip whatever the file's size.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface SyscallCount {
  total: number;
  bySyscall: Record<string, number>;
}

export class SyscallCounter {
  private constructor(
    private readonly child: ChildProcess,
    private readonly output: string,
    private readonly exited: Promise<void>,
  ) {}

  static async attach(pid: number): Promise<SyscallCounter> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-strace-'));
    const output = path.join(dir, 'count.txt');
    const child = spawn(
      'strace',
      ['-f', '-c', '-o', output, '-e', 'trace=%file,getdents64', '-p', String(pid)],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    // strace says "Process <pid> attached" once it traces the process.
    const deadline = Date.now() + 10_000;
    while (!stderr.includes('attached')) {
      if (child.exitCode !== null) throw new Error(`strace ended at once: ${stderr}`);
      if (Date.now() > deadline) throw new Error(`strace did not attach to ${pid}: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return new SyscallCounter(child, output, exited);
  }

  /** Detaches and returns the counts since attach. */
  async stop(): Promise<SyscallCount> {
    this.child.kill('SIGINT');
    await this.exited;
    const text = await fsp.readFile(this.output, 'utf8');
    await fsp.rm(path.dirname(this.output), { recursive: true, force: true });
    return parseStraceSummary(text);
  }
}

/** strace -c's table: "% time seconds usecs/call calls [errors] syscall", then a "total" row. */
export function parseStraceSummary(text: string): SyscallCount {
  const bySyscall: Record<string, number> = {};
  let total = 0;
  for (const line of text.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 5 || !/^\d/.test(cols[0]!)) continue;
    const name = cols.at(-1)!;
    if (name === 'total') continue;
    const calls = Number(cols[3]);
    if (!Number.isFinite(calls)) continue;
    bySyscall[name] = calls;
    total += calls;
  }
  return { total, bySyscall };
}
