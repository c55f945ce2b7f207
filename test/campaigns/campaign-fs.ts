import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { GLUSTER_NO_CLIENT_CACHE } from '../support/shared-fs/gluster-volume';
import { SharedFsBed, type SharedFsKind } from '../support/shared-fs/shared-fs-bed';
import { makeTempDir, removeDir } from '../support/temp-dirs';

/*
 * The file system a campaign's shared folder lives on (issue 24): CAMPAIGN_FS=local (default), cephfs or
 * glusterfs (`npm run campaign -- --fs cephfs`). On a shared file system the campaign's processes are
 * spread over two FUSE clients of one bed (the first process on client a, the next on b, ...), so every
 * lock hand-over and every heartbeat crosses clients, as between hosts. GlusterFS runs with the options
 * the start-up check demands (performance.stat-prefetch off, FUSE attribute/entry timeouts 0).
 */

export type CampaignFsKind = 'local' | SharedFsKind;

export function campaignFsKind(): CampaignFsKind {
  const value = process.env.CAMPAIGN_FS ?? 'local';
  if (value !== 'local' && value !== 'cephfs' && value !== 'glusterfs')
    throw new Error(`CAMPAIGN_FS must be local, cephfs or glusterfs (got ${JSON.stringify(value)})`);
  return value;
}

/**
 * The lock timings the multi-process lock tests run with (their workers' LockWorkerConfig.timings), and
 * the chaos campaign's conductors (lockEnvOf).
 */
export interface TestLockTimings {
  staleMs: number;
  updateMs: number;
  safetyMarginMs: number;
  pollMs: number;
}

/** Short, so that stale takeovers happen within a test: 2 s stale, 0.5 s margin, a beat a second. */
const SHORT_LOCK_TIMINGS: TestLockTimings = {
  staleMs: 2_000,
  updateMs: 1_000,
  safetyMarginMs: 500,
  pollMs: 20,
};

/**
 * The tests' short lock timings, fit for `kind`. On CephFS a heartbeat refresh is two calls (a stat, then
 * utimes, each through ceph-fuse and often the MDS), and the next is due `updateMs` after the last one
 * ended: with 40 keys raced by 8 processes on two mounts, calls took up to 0.8 s (p99 0.3-0.6 s) on this
 * 2-core machine, so beats came 1.5-1.8 s apart and holders lost their locks ("heartbeat gap") under a
 * trust window of 1.5 s (2 s stale - 0.5 s margin). A 3 s window (4 s stale, 1 s margin) leaves 2 s for the
 * refresh's calls: the same race then ran with no lost lock. Operators get the same advice with the
 * defaults' margins (docs/deployment.md, "CephFS"). GlusterFS, whose FUSE calls without client caches
 * take 10-40 ms each, lost 50 first-use locks (nobody took them over) under the 1.5 s window in the
 * campaign of seed 24006: the same window as CephFS. A local folder: the short timings.
 */
export function lockTimingsOn(kind: CampaignFsKind): TestLockTimings {
  return kind === 'cephfs' || kind === 'glusterfs'
    ? { staleMs: 4_000, updateMs: 1_000, safetyMarginMs: 1_000, pollMs: 20 }
    : SHORT_LOCK_TIMINGS;
}

/**
 * How long the processes of a hand-removal round or test may take, from what they must do: `acquisitions`
 * of one key, one holder at a time, and `strikes` under the long holder (it waits its turn, holds 20
 * checks 200 ms apart, and one or two removals by hand land meanwhile). On a local folder the fixed 110 s
 * these rounds always had. On GlusterFS (seed 24010, large: 7 contenders x 60 on one key) a round took
 * 106 s at load average 5: about 215 ms per acquisition once the removals were over (some 20 FUSE calls
 * of 8-20 ms in a row: the hold's two checks, the release, the waiter's look and claim), and each removal
 * by hand 8-11 s while claimants kept re-making the folder. The budget allows twice the acquisition's
 * pace and 40 s a strike, as the machine is often twice as loaded; CephFS is faster than that.
 */
export function handOverBudgetMs(kind: CampaignFsKind, acquisitions: number, strikes: number): number {
  if (kind === 'local') return 110_000;
  return Math.max(110_000, acquisitions * 500 + strikes * 40_000);
}

/** A conductor's environment for `timings` (LOCK_STALE_MS and the rest, as the product reads them). */
export function lockEnvOf(timings: TestLockTimings): Record<string, string> {
  return {
    LOCK_STALE_MS: String(timings.staleMs),
    LOCK_UPDATE_MS: String(timings.updateMs),
    LOCK_SAFETY_MARGIN_MS: String(timings.safetyMarginMs),
    LOCK_POLL_MS: String(timings.pollMs),
  };
}

/** One campaign folder as each client sees it: `roots[i]` is client i's path to the same folder. */
export interface CampaignFolder {
  roots: string[];
  /** The folder for process number `index` (spread over the clients). */
  rootFor(index: number): string;
}

/**
 * The bed of one spec file: started on first use, stopped by `stop()` (afterAll). `folder()` gives a
 * fresh folder per round or test; `remove()` takes it away again.
 */
export class CampaignFs {
  private bed?: SharedFsBed;

  constructor(readonly kind: CampaignFsKind = campaignFsKind()) {}

  async folder(label: string): Promise<CampaignFolder> {
    if (this.kind === 'local') {
      const dir = await makeTempDir(label);
      return { roots: [dir], rootFor: () => dir };
    }
    this.bed ??= await SharedFsBed.start(this.kind, ['a', 'b'], {
      gluster: {
        volumeOptions: { 'performance.stat-prefetch': 'off' },
        clientOptions: GLUSTER_NO_CLIENT_CACHE,
      },
    });
    const name = `${label}-${randomBytes(4).toString('hex')}`;
    await fsp.mkdir(path.join(this.bed.mount('a'), name));
    const roots = ['a', 'b'].map((client) => path.join(this.bed!.mount(client), name));
    return { roots, rootFor: (index) => roots[index % roots.length]! };
  }

  async remove(folder: CampaignFolder | undefined): Promise<void> {
    if (folder) await removeDir(folder.roots[0]);
  }

  async stop(): Promise<void> {
    await this.bed?.stop();
    this.bed = undefined;
  }
}
