import { afterEach, expect } from 'vitest';
import { sharedFsLeftovers } from './shared-fs-bed';

/**
 * A bed made inside a test, torn down after it whatever happened, and checked to leave no mount and no
 * process (call inside `describe`; set `holder.bed` once the bed is up).
 */
export function bedPerTest<B extends { base: string }>(stop: (bed: B) => Promise<void>): { bed?: B } {
  const holder: { bed?: B } = {};
  afterEach(async () => {
    const bed = holder.bed;
    holder.bed = undefined;
    if (!bed) return;
    await stop(bed);
    expect(await sharedFsLeftovers(bed.base)).toEqual([]);
  });
  return holder;
}
