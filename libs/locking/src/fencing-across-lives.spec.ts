import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoarseClock } from './coarse-clock.fixture';
import type { HeldLock } from './held-lock';
import type { LockFileSystem } from './lock-file-system';
import { NodeLockManager } from './node-lock-manager';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const KEY = { node: 'n1', imageId: 'img', mode: 'exclusive' as const };
const WAIT = { timeoutMs: 10_000 };

/**
 * Two lives of a key folder, separated by a removal by hand, whose epochs the file system stamps with the
 * same mtime (its clock did not tick in between: a jiffy locally, a whole second on sshfs and some NFS).
 * The clock ticks only while an acquisition is seen waiting (`settled`), never between the two epochs.
 */
describe('fencing tokens across lives of a key folder made within one tick of the file system clock', () => {
  let root: string;
  let keyDir: string;
  let clock: CoarseClock;
  const managers: NodeLockManager[] = [];

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-fencing-'));
    keyDir = path.join(root, 'n1', 'locks', 'img');
    clock = new CoarseClock();
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });

  const manager = (conductorId: string, fs: LockFileSystem = clock) => {
    const m = new NodeLockManager({ root, conductorId, timings: FAST, fs });
    managers.push(m);
    return m;
  };

  /** `pending`, letting the clock tick each time it has waited 300 ms (an acquisition waiting for it). */
  async function settled<T>(pending: Promise<T>): Promise<T> {
    for (;;) {
      const done = await Promise.race([pending.then((value) => ({ value })), sleep(300)]);
      if (done) return done.value;
      clock.tick();
    }
  }

  const removeByHand = () => fsp.rm(keyDir, { recursive: true, force: true });

  it('the first claim of the next life does not repeat a token of the removed life', async () => {
    const a = await settled(manager('a').acquire(KEY, WAIT));
    await removeByHand(); // under its holder, who finds its lock gone at its next check
    const b = await settled(manager('b').acquire(KEY, WAIT));
    expect(b.fencingToken, 'fencing tokens keep growing across a removed key folder').toBeGreaterThan(
      a.fencingToken,
    );
    expect(await a.isStillHeld()).toBe(false);
    expect(await b.isStillHeld()).toBe(true);
    const probes = (await fsp.readdir(keyDir)).filter((name) => name.startsWith('c~'));
    expect(probes, 'clock probes left in the key folder').toEqual([]);
  });

  it("the removed life's late release does not give the next life's gate back", async () => {
    const a = await settled(manager('a').acquire(KEY, WAIT));
    await removeByHand();
    const b = await settled(manager('b').acquire(KEY, WAIT));
    await a.release(); // late: its release marker lands in the new folder
    expect(await b.isStillHeld(), "the new life's holder lost its gate to the old life's release").toBe(true);
  });

  it('a claimant paused after its mkdir while the folder is removed and made again never holds beside the next holder', async () => {
    // A claims the first generation of the folder and stalls right after its mkdir; the folder is removed
    // by hand and B starts the next life and claims its first generation; A then goes on to its heartbeat.
    const stall = new Gate();
    let aLooksAfter = 0;
    let resumed = false;
    const aFs: LockFileSystem = {
      readdir: (dir) => {
        if (resumed && dir === keyDir) aLooksAfter++;
        return clock.readdir(dir);
      },
      mkdir: async (dir, options) => {
        const made = await clock.mkdir(dir, options);
        if (/\/g-\d+$/.test(dir) && !resumed) await stall.stall();
        return made;
      },
      stat: (target) => clock.stat(target),
      rm: (target, options) => clock.rm(target, options),
      rmdir: (target) => clock.rmdir(target),
      rename: (from, to) => clock.rename(from, to),
    };
    let aLock: HeldLock | undefined;
    const aAcquire = manager('a', aFs)
      .acquire(KEY, WAIT)
      .then((lock) => (aLock = lock));
    await settled(stall.reached);
    await removeByHand();
    const b = await settled(manager('b').acquire(KEY, WAIT));
    resumed = true;
    stall.go();
    // A either holds (its heartbeat went into B's generation folder of the same name) or gave the claim
    // up and looks again (its heartbeat's folder was gone).
    await Promise.race([aAcquire, waitUntil(() => aLooksAfter >= 2)]);
    const both = aLock !== undefined && (await aLock.isStillHeld()) && (await b.isStillHeld());
    expect(both, 'two holders of one generation pass their checks at once').toBe(false);
    await b.release();
    await settled(aAcquire);
    expect(aLock!.fencingToken).toBeGreaterThan(b.fencingToken);
  });
});

/** A point where one step of one claimant waits until the test lets it go on. */
class Gate {
  private open!: () => void;
  private readonly opened = new Promise<void>((r) => (this.open = r));
  private arrived!: () => void;
  readonly reached = new Promise<void>((r) => (this.arrived = r));

  stall(): Promise<void> {
    this.arrived();
    return this.opened;
  }

  go(): void {
    this.open();
  }
}

function sleep(ms: number): Promise<undefined> {
  return new Promise((r) => setTimeout(() => r(undefined), ms));
}

async function waitUntil(condition: () => boolean): Promise<void> {
  while (!condition()) await sleep(10);
}
