import type { BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';

const SECOND_US = 1_000_000n;

/**
 * A file system whose clock ticks only when the test says so (a whole-second NFS or sshfs server, or a
 * kernel's jiffy, stretched): every folder made through it, and the folder it was made in, is stamped
 * with the clock's current second, as the file system would stamp them. So two lives of a key folder
 * get the same epoch mtime until `tick()`. Paths it did not stamp (heartbeats, which proper-lockfile
 * makes and refreshes outside the seam) keep their real mtimes.
 */
export class CoarseClock implements LockFileSystem {
  private nowUs = (BigInt(Date.now()) / 1000n) * SECOND_US;
  private readonly stamps = new Map<string, bigint>();

  tick(): void {
    this.nowUs += SECOND_US;
  }

  get clockUs(): number {
    return Number(this.nowUs);
  }

  async mkdir(dir: string, options?: { recursive?: boolean }): Promise<unknown> {
    const made = await nodeLockFileSystem.mkdir(dir, options);
    if (typeof made === 'string') for (let d = dir; d.startsWith(made); d = path.dirname(d)) this.stamp(d);
    this.stamp(dir);
    this.stamp(path.dirname(dir));
    return made;
  }

  async stat(target: string): Promise<BigIntStats> {
    const real = await nodeLockFileSystem.stat(target);
    const us = this.stamps.get(target);
    if (us === undefined) return real;
    const ns = us * 1000n;
    return Object.assign(Object.create(Object.getPrototypeOf(real) as object) as BigIntStats, real, {
      mtimeNs: ns,
      mtimeMs: ns / 1_000_000n,
      mtime: new Date(Number(ns / 1_000_000n)),
    });
  }

  readdir(dir: string): Promise<string[]> {
    return nodeLockFileSystem.readdir(dir);
  }

  async rm(target: string, options: { recursive: true; force: true }): Promise<void> {
    await nodeLockFileSystem.rm(target, options);
    this.stamp(path.dirname(target));
  }

  async rmdir(target: string): Promise<void> {
    await nodeLockFileSystem.rmdir!(target);
    this.stamp(path.dirname(target));
  }

  async rename(from: string, to: string): Promise<void> {
    await nodeLockFileSystem.rename(from, to);
    this.stamp(path.dirname(from));
    this.stamp(path.dirname(to));
  }

  private stamp(target: string): void {
    this.stamps.set(target, this.nowUs);
  }
}
