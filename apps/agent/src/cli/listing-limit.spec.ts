import { describe, expect, it } from 'vitest';
import { UsageError } from './exit-codes';
import { DEFAULT_LISTING_LIMIT, cutNotice, parseLimit } from './listing-limit';

describe('listing limits', () => {
  it('--limit is a whole number of rows, 1 or more; the default when not given', () => {
    expect(parseLimit(undefined)).toBe(DEFAULT_LISTING_LIMIT);
    expect(parseLimit('5000')).toBe(5000);
    for (const bad of ['0', '-1', '1.5', 'ten', '']) expect(() => parseLimit(bad), bad).toThrow(UsageError);
  });

  it('says how many rows were left out, and nothing when none were', () => {
    expect(cutNotice(200, 5000, 'nodes')).toBe('… 4800 more nodes (use --limit)');
    expect(cutNotice(3, 3, 'nodes')).toBeUndefined();
  });
});
