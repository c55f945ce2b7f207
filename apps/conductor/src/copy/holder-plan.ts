/*
 * When one copy reads from more than its source (docs/copies.md, "Several holders at once"). Pure.
 *
 * The rule is chooseFetch's rate rule (libs/fanout) for a single destination: another holder is added
 * only while the read caps of the holders taken so far add up to less than the destination's write cap.
 * An uncapped holder reads as fast as the disks allow: nothing is gained by adding another, and without
 * caps (the default) every copy reads its one source as today.
 */

/** Holders one copy reads from at most, its source included. */
export const MAX_HOLDERS_PER_COPY = 4;

/**
 * Whether a copy reading from holders with these read caps (bytes per second, 0: none; the source's
 * first) should add one more, for a destination with write cap `writeBps` (0: none).
 */
export function wantsAnotherHolder(
  readBps: readonly number[],
  writeBps: number,
  max = MAX_HOLDERS_PER_COPY,
): boolean {
  if (readBps.length === 0 || readBps.length >= max) return false;
  if (readBps.some((rate) => rate <= 0)) return false;
  if (writeBps <= 0) return true;
  return readBps.reduce((sum, rate) => sum + rate, 0) < writeBps;
}
