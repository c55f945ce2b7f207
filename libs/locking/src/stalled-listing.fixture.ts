import { type LockFileSystem, nodeLockFileSystem } from './lock-file-system';

/**
 * A claimant that is descheduled right after it listed the key folder: the listing it acts on is then
 * older than the other claimant's mkdir. The seam holds the result of one readdir of the key folder until
 * the test lets it go, and counts the later ones.
 */
export class StalledListing implements LockFileSystem {
  private armed = true;
  private release!: () => void;
  private readonly released = new Promise<void>((r) => (this.release = r));
  private listed!: () => void;
  readonly listedOnce = new Promise<void>((r) => (this.listed = r));
  listingsAfterRelease = 0;
  private afterRelease = false;
  private waiters: Array<() => void> = [];

  constructor(private readonly keyDir: string) {}

  async readdir(dir: string): Promise<string[]> {
    const names = await nodeLockFileSystem.readdir(dir);
    if (dir !== this.keyDir) return names;
    if (this.armed) {
      this.armed = false;
      this.listed();
      await this.released;
      return names;
    }
    if (this.afterRelease) {
      this.listingsAfterRelease++;
      for (const wake of this.waiters.splice(0)) wake();
    }
    return names;
  }

  go(): void {
    this.afterRelease = true;
    this.release();
  }

  /** Resolves once the stalled claimant has listed the folder `n` more times after its stale listing. */
  async listingsAfter(n: number): Promise<void> {
    while (this.listingsAfterRelease < n) await new Promise<void>((r) => this.waiters.push(r));
  }

  mkdir = nodeLockFileSystem.mkdir;
  stat = nodeLockFileSystem.stat;
  rm = nodeLockFileSystem.rm;
  rename = nodeLockFileSystem.rename;
}
