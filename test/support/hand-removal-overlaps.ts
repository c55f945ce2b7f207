/**
 * Which overlaps of the critical-section detector (test/support/lock-worker.ts, criticalStep) a removal of
 * the key folder by hand explains. The protocol treats a hand removal like a pause of every holder that is
 * between its check and its act (libs/locking/model/README.md, "hand removal"): a holder whose check read
 * the folder before the removal still acts on it, while a new life of the folder already has a holder. So
 * an overlap is explained when some removal had not ended when the earlier holder (the lower fencing
 * token) began its check, and had begun before the later holder passed its own. Any other overlap means a
 * check passed after the removal had ended, which the protocol forbids: it stays "real".
 */

export interface CriticalEntry {
  checkedAt: number;
  pid: number;
  token: number;
  checkStartedAt: number;
}

export interface RemovalWindow {
  from: number;
  to: number;
}

/** `<check passed>-<pid>-<fencing token>-<check started>`, all whole numbers. */
export function parseCriticalEntry(name: string): CriticalEntry {
  const parts = name.split('-').map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isSafeInteger(n)))
    throw new Error(`not a critical-section entry: ${name}`);
  const [checkedAt, pid, token, checkStartedAt] = parts as [number, number, number, number];
  return { checkedAt, pid, token, checkStartedAt };
}

export function explainedByRemoval(
  overlap: { mine: string; other: string },
  removals: readonly RemovalWindow[],
): boolean {
  const [earlier, later] = [parseCriticalEntry(overlap.mine), parseCriticalEntry(overlap.other)].sort(
    (a, b) => a.token - b.token,
  ) as [CriticalEntry, CriticalEntry];
  return removals.some((r) => r.to >= earlier.checkStartedAt && r.from <= later.checkedAt);
}
