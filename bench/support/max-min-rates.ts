/* Max-min fair shares of node caps among reads, for bench/support/swarm-model.ts. */
/**
 * Max-min fair rates (progressive filling): every node caps its reads' sum at `cap` (reads it serves) and
 * its writes' sum at `cap` (reads into it); the tightest node's level fixes its reads, and so on.
 */
export function maxMinRates<T>(
  reads: T[],
  source: (read: T) => number,
  destination: (read: T) => number,
  nodes: number,
  cap: number,
): number[] {
  // Constraint k < nodes: node k's reads; k >= nodes: node k - nodes's writes.
  const members = Array.from({ length: 2 * nodes }, (): number[] => []);
  reads.forEach((read, i) => {
    members[source(read)]!.push(i);
    members[nodes + destination(read)]!.push(i);
  });
  const left = new Float64Array(2 * nodes).fill(cap);
  const open = Int32Array.from(members, (m) => m.length);
  const rates = new Array<number>(reads.length).fill(NaN);
  for (let fixed = 0; fixed < reads.length;) {
    let best = -1;
    let level = Infinity;
    for (let k = 0; k < members.length; k++)
      if (open[k]! > 0 && left[k]! / open[k]! < level) [best, level] = [k, left[k]! / open[k]!];
    for (const i of members[best]!) {
      if (!Number.isNaN(rates[i])) continue;
      rates[i] = level;
      fixed++;
      const read = reads[i]!;
      for (const k of [source(read), nodes + destination(read)]) {
        left[k]! -= level;
        open[k]!--;
      }
    }
  }
  return rates;
}
