import { describe, expect, it } from 'vitest';
import { explainedByRemoval, parseCriticalEntry } from './support/hand-removal-overlaps';

describe('overlaps a removal by hand explains', () => {
  // The overlap seen in CI: token 855354 checked at 872, token 867354 (a new life of the folder) at 876.
  const overlap = { mine: '876-1521-867354-870', other: '872-1519-855354-860' };

  it('explains an overlap when the removal had not ended as the earlier holder began its check', () => {
    expect(explainedByRemoval(overlap, [{ from: 862, to: 866 }])).toBe(true);
    expect(explainedByRemoval(overlap, [{ from: 855, to: 860 }])).toBe(true);
  });

  it('keeps it real when every removal ended before that check began, or began after the later check', () => {
    expect(explainedByRemoval(overlap, [{ from: 850, to: 859 }])).toBe(false);
    expect(explainedByRemoval(overlap, [{ from: 877, to: 900 }])).toBe(false);
    expect(explainedByRemoval(overlap, [])).toBe(false);
  });

  it('takes the earlier holder by fencing token, whichever side listed', () => {
    const swapped = { mine: overlap.other, other: overlap.mine };
    expect(explainedByRemoval(swapped, [{ from: 862, to: 866 }])).toBe(true);
    expect(explainedByRemoval(swapped, [{ from: 850, to: 859 }])).toBe(false);
  });

  it('refuses a name that is not an entry', () => {
    expect(() => parseCriticalEntry('872-1519-855354')).toThrow('not a critical-section entry');
    expect(parseCriticalEntry('872-1519-855354-860')).toEqual({
      checkedAt: 872,
      pid: 1519,
      token: 855354,
      checkStartedAt: 860,
    });
  });
});
