import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { NodeLockManager } from '@app/locking';
import { ROUND_LEASE_FOLDER, RoundLease, prepareRoundLeases, roundLeaseLocks } from './round-lease';

const FAST = { staleMs: 2_000, updateMs: 1_000, safetyMarginMs: 500, pollMs: 20 };
const MINUTE = 60_000;

describe('a cell-wide round lease', () => {
  let root: string;
  let clock = 0;
  const managers: NodeLockManager[] = [];

  beforeEach(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'icc-lease-'));
    await fsp.mkdir(path.join(root, 'node-1')); // a cell's CACHE_ROOT is never empty (makeCellFolder)
    await prepareRoundLeases(root);
    clock = 0;
  });
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.releaseAll()));
    await fsp.rm(root, { recursive: true, force: true });
  });

  const lease = (conductorId: string) => {
    const locks = roundLeaseLocks({ root, conductorId, timings: FAST });
    managers.push(locks);
    return new RoundLease(locks, 'leftover-sweep', MINUTE, () => clock);
  };

  it('three conductors ticking every interval run one round per interval between them, as one alone', async () => {
    const rounds = async (conductors: RoundLease[]) => {
      let ran = 0;
      for (let minute = 0; minute < 10; minute++)
        for (const [i, c] of conductors.entries()) {
          clock = minute * MINUTE + i * 7_000 + 1; // each its own phase
          if ((await c.tick(async () => undefined)) === 'ran') ran += 1;
        }
      return ran;
    };
    const alone = await rounds([lease('solo')]);
    await fsp.rm(path.join(root, ROUND_LEASE_FOLDER), { recursive: true, force: true });
    await prepareRoundLeases(root);
    const three = await rounds([lease('a'), lease('b'), lease('c')]);
    expect(alone).toBeGreaterThanOrEqual(5);
    expect(three, 'rounds run by three conductors together').toBeLessThanOrEqual(alone);
  });

  it("takes no lease, and runs no round, where the leases' folder is missing (a dead mount's empty mount point)", async () => {
    await fsp.rm(path.join(root, ROUND_LEASE_FOLDER), { recursive: true, force: true });
    let ran = 0;
    expect(await lease('cut-off').tick(async () => void ran++)).toBe('busy');
    expect(ran).toBe(0);
    expect(await fsp.readdir(root)).toEqual(['node-1']); // nothing made there
  });

  it('a lone conductor whose timer fires a few ms before the full interval still runs every tick', async () => {
    const solo = lease('solo');
    let ran = 0;
    for (let tick = 0; tick < 5; tick++) {
      clock += MINUTE - 3;
      await solo.tick(async () => void ran++);
    }
    expect(ran).toBe(5);
  });

  it('a runner that died holding the lease is taken over after an interval: rounds go on', async () => {
    // A dead conductor's lease: its generation claimed, its heartbeat frozen, never released.
    const keyDir = path.join(root, ROUND_LEASE_FOLDER, 'cell', 'locks', 'leftover-sweep');
    await fsp.mkdir(path.join(keyDir, 'epoch'), { recursive: true });
    const floor = Number((await fsp.stat(path.join(keyDir, 'epoch'), { bigint: true })).mtimeNs / 1000n);
    await fsp.mkdir(path.join(keyDir, `g-${floor}`, 'h~dead~a1'), { recursive: true });
    const survivor = lease('survivor');
    let ran = 0;
    expect(await survivor.tick(async () => void ran++)).toBe('recent'); // first sighting
    clock += MINUTE + 1;
    expect(await survivor.tick(async () => void ran++)).toBe('ran');
    expect(ran).toBe(1);
  });
});
