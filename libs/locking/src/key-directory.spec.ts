import { describe, expect, it } from 'vitest';
import { firstGeneration } from './key-directory';

describe('firstGeneration', () => {
  it('is higher for a key folder re-created later in the same second (a lock folder removed by hand mid-copy)', () => {
    const created = Date.parse('2026-01-01T00:00:00.100Z');
    // The folder saw a few hand-overs, then was removed by hand and re-created 300 ms later.
    expect(firstGeneration(created + 300)).toBeGreaterThan(firstGeneration(created) + 5);
  });

  it('stays a safe integer', () => {
    expect(Number.isSafeInteger(firstGeneration(Date.parse('2200-01-01T00:00:00Z')))).toBe(true);
  });
});
