/* Seeded randomness for bench/support/swarm-model.ts: which copies in progress a copy reads from. */

/** A seeded random number in [0, 1) (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` distinct random nodes among 1..n other than `self` (all of them when there are fewer). */
export function samplePeers(n: number, self: number, count: number, random: () => number): number[] {
  const others = n - 1;
  if (others <= count) return Array.from({ length: n }, (_, i) => i + 1).filter((k) => k !== self);
  const picked = new Set<number>();
  while (picked.size < count) {
    const k = 1 + Math.floor(random() * n);
    if (k !== self) picked.add(k);
  }
  return [...picked];
}
