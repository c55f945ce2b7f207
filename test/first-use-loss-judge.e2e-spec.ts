import { describe, expect, it } from 'vitest';
import {
  type RoundAcquisition,
  type RoundLoss,
  judgeFirstUseRound,
  lossSource,
  reasonKind,
} from './campaigns/first-use-loss-judge';

const NEWER = 'a newer holder or a removed lock entry was found';
const got = (key: string, fencingToken: number, tookOverStale = false): RoundAcquisition => ({
  key,
  fencingToken,
  tookOverStale,
});
const lost = (key: string, fencingToken: number, why: string): RoundLoss => ({
  key,
  fencingToken,
  reason: `lock on n1/${key} lost: ${why}`,
});
/** One key's hand-overs as in a first-use round: one generation after the other from the epoch floor. */
const handOvers = (key: string, from: number, count: number) =>
  Array.from({ length: count }, (_, i) => got(key, from + i));

describe('judging a first-use round of the lock campaign', () => {
  it('fails a first-use double win: two holders, no takeover, the earlier one finding the later one', () => {
    // The first-use bug (docs/correctness.md row 1): both computed a name from one empty listing and won,
    // 855354 and 855356; the earlier holder's next check found 855356 above its own. No overlap was
    // sampled, and the tokens differ: the loss alone must fail the round.
    const verdict = judgeFirstUseRound({
      acquisitions: [got('r4-k7', 855354), got('r4-k7', 855356)],
      losses: [lost('r4-k7', 855354, NEWER)],
      overlaps: [],
    });
    expect(verdict.violations).toEqual([
      `r4-k7: the holder of token 855354 lost it (lock on n1/r4-k7 lost: ${NEWER}) to token 855356, which took nothing over stale: a second holder`,
    ]);
  });

  it('is not excused by a stale takeover of a later generation of that key', () => {
    const verdict = judgeFirstUseRound({
      acquisitions: [got('k', 10), got('k', 12), got('k', 13, true)],
      losses: [lost('k', 10, NEWER)],
      overlaps: [],
    });
    expect(verdict.violations).toHaveLength(1);
    expect(verdict.lostToStaleTakeover).toBe(0);
  });

  it('passes the GlusterFS shape: losses by the holder own trust window, no overlap, no token twice', () => {
    // Seed 24010, large, on GlusterFS: 81 holders lost locks under load, the detector saw nothing.
    const verdict = judgeFirstUseRound({
      acquisitions: [...handOvers('r4-k0', 500, 8), ...handOvers('r4-k1', 700, 8)],
      losses: [
        lost('r4-k0', 502, 'heartbeat gap of 3120 ms'),
        lost('r4-k0', 505, 'no heartbeat for 3012 ms'),
        { key: 'r4-k1', fencingToken: 703, reason: 'isStillHeld() was false' },
      ],
      overlaps: [],
    });
    expect(verdict.violations).toEqual([]);
    expect(verdict.lostOwnClock).toBe(3);
    expect(verdict.lostReasons).toEqual({
      'heartbeat gap of N ms': 1,
      'no heartbeat for N ms': 1,
      'isStillHeld() was false': 1,
    });
  });

  it('counts a loss to the stale takeover of the next generation acquired, even past a given-up claim', () => {
    const verdict = judgeFirstUseRound({
      // 41: taken over stale right after 40. 51 was claimed over 50 but given up (its re-check found its
      // own heartbeat not fresh); 52 took that empty generation over stale.
      acquisitions: [got('a', 40), got('a', 41, true), got('b', 50), got('b', 52, true)],
      losses: [lost('a', 40, NEWER), lost('b', 50, NEWER)],
      overlaps: [],
    });
    expect(verdict.violations).toEqual([]);
    expect(verdict.lostToStaleTakeover).toBe(2);
    expect(verdict.staleTakeovers).toBe(2);
  });

  it('gives a reason not known to be the holder own clock no benefit of the doubt', () => {
    const compromised = 'heartbeat /x/h~c~1 compromised: Unable to update lock within the stale threshold';
    expect(lossSource(`lock on n1/k lost: ${compromised}`)).toBe('other');
    const verdict = judgeFirstUseRound({
      acquisitions: [got('k', 1), got('k', 2)],
      losses: [lost('k', 1, compromised), { key: '(no key, pid 9)', fencingToken: 1, reason: NEWER }],
      overlaps: [],
    });
    expect(verdict.violations).toHaveLength(2);
    expect(verdict.violations[1]).toContain('to no later holder');
  });

  it('fails an overlap of the detector and a fencing token handed out twice, with no loss at all', () => {
    const overlap = { type: 'overlap', kind: 'real', mine: '876-1521-3-870', other: '872-1519-2-860' };
    const verdict = judgeFirstUseRound({
      acquisitions: [got('k', 2), got('k', 2), got('j', 3)],
      losses: [],
      overlaps: [overlap],
    });
    expect(verdict.violations).toEqual([
      `two holders at once: ${JSON.stringify(overlap)}`,
      'k handed out a fencing token twice: 2,2',
    ]);
  });

  it('names reasons without the key and the numbers', () => {
    expect(reasonKind('lock on n1/r12-k33 lost: heartbeat gap of 4410 ms')).toBe('heartbeat gap of N ms');
    expect(lossSource('lock on n1/r12-k33 lost: heartbeat not fresh')).toBe('own-clock');
    // Since 1.1.0 they say where the time went.
    const stalled =
      'lock on n1/r1-k3 lost: no heartbeat for 3812 ms (its stat unanswered for 2790 ms; the last answered: stat 4 ms, utimes 6 ms)';
    expect(lossSource(stalled)).toBe('own-clock');
    expect(reasonKind(stalled)).toBe(
      'no heartbeat for N ms (its stat unanswered for N ms; the last answered: stat N ms, utimes N ms)',
    );
    expect(lossSource('lock on n1/r1-k3 lost: heartbeat gap of 3100 ms (no refresh call under way)')).toBe(
      'own-clock',
    );
    expect(lossSource(`lock on n1/r12-k33 lost: ${NEWER}`)).toBe('other');
  });
});
