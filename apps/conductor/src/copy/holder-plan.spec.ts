import { describe, expect, it } from 'vitest';
import { MAX_HOLDERS_PER_COPY, wantsAnotherHolder } from './holder-plan';

const MiB = 1024 * 1024;

describe('when a copy reads from one more holder', () => {
  it('adds holders while their read caps together stay below the destination’s write cap', () => {
    expect(wantsAnotherHolder([16 * MiB], 64 * MiB)).toBe(true);
    expect(wantsAnotherHolder([16 * MiB, 16 * MiB, 16 * MiB], 64 * MiB)).toBe(true);
    expect(wantsAnotherHolder([16 * MiB, 16 * MiB, 16 * MiB, 16 * MiB], 64 * MiB)).toBe(false);
    expect(wantsAnotherHolder([32 * MiB, 32 * MiB], 64 * MiB)).toBe(false);
  });

  it('reads one source as today when no cap makes a second one faster', () => {
    // No caps at all (the default), an uncapped source, a source as fast as the destination.
    expect(wantsAnotherHolder([0], 0)).toBe(false);
    expect(wantsAnotherHolder([0], 64 * MiB)).toBe(false);
    expect(wantsAnotherHolder([64 * MiB], 64 * MiB)).toBe(false);
    expect(wantsAnotherHolder([16 * MiB, 0], 64 * MiB)).toBe(false);
    expect(wantsAnotherHolder([], 64 * MiB)).toBe(false);
  });

  it('fills an uncapped destination from capped holders up to the bound', () => {
    expect(wantsAnotherHolder([16 * MiB], 0)).toBe(true);
    expect(wantsAnotherHolder(new Array(MAX_HOLDERS_PER_COPY).fill(16 * MiB), 0)).toBe(false);
    expect(wantsAnotherHolder([16 * MiB, 16 * MiB], 0, 2)).toBe(false);
  });
});
