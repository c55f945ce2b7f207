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
  /** The one decision: the root is on a local file system (no fsyncs of steps, watches allowed). */
  private local: boolean;
  private readonly withoutSync: LockFileSystem;
  private checkedAt = -Infinity;
  private checking?: Promise<void>;

  constructor(
    private readonly fs: LockFileSystem,
    private readonly root: string,
    private readonly syncSteps?: boolean,
  ) {
    this.withoutSync = withoutFolderSync(fs);
    this.local = syncSteps === false;
  }

  get current(): LockFileSystem {
    return this.local ? this.withoutSync : this.fs;
  }

  /**
   * Whether a key folder may be watched (inotify): only once the root is known to be on a local file
   * system. Setting a watch looks the path up on the main thread, so on a FUSE or network mount that
   * stopped answering it froze the whole process, heartbeats, hang watchdog and broker heartbeats too
   * (a frozen mount in the across-hosts campaign: 91 s of silence); and there it never sees another
   * client's change anyway.
   */
  get watchable(): boolean {
    return this.local;
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
    this.local = !(await stepsNeedSync(this.root));
    this.checkedAt = performance.now();
    this.checking = undefined;
  }
}
