import { type LockFileSystem, stepsNeedSync, withoutFolderSync } from './lock-file-system';

/** How long stepsNeedSync's answer for the root is kept. */
const SYNC_CHECK_MS = 60_000;

/**
 * The file system a lock manager's steps go through: its seam, without the fsyncs (syncFolder) on a
 * local file system, where they cost without helping. `syncSteps` set decides for good; unset, the root's
 * file system is asked at most once a minute (a mount can come and go under a running conductor), in the
 * background: a hung mount must not hold an acquisition up here. Until the first answer, steps are fsynced.
 */
export class StepFileSystem {
  private chosen: LockFileSystem;
  private checkedAt = -Infinity;
  private checking?: Promise<void>;

  constructor(
    private readonly fs: LockFileSystem,
    private readonly root: string,
    private readonly syncSteps?: boolean,
  ) {
    this.chosen = syncSteps === false ? withoutFolderSync(fs) : fs;
  }

  get current(): LockFileSystem {
    return this.chosen;
  }

  /** Asks the root's file system again if the last answer is older than a minute; never waits for it. */
  refresh(): void {
    if (this.syncSteps !== undefined || this.checking) return;
    if (performance.now() - this.checkedAt < SYNC_CHECK_MS) return;
    this.checking = this.check();
  }

  /** For tests: the answer being asked now, if any. */
  settled(): Promise<void> {
    return this.checking ?? Promise.resolve();
  }

  private async check(): Promise<void> {
    const sync = await stepsNeedSync(this.root);
    this.chosen = sync ? this.fs : withoutFolderSync(this.fs);
    this.checkedAt = performance.now();
    this.checking = undefined;
  }
}
