/**
 * Reads of one key shared by every caller in this process for `maxAgeMs`: a read started less than that
 * ago answers the caller with its result (or its failure) instead of a new read. For records other
 * conductors rewrite and many copies here re-read at each look (swarm-files.ts): N copies of one fan-out
 * in a conductor read the same record once per look, not N times. Only for reads whose result is a hint
 * the caller checks anyway (a swarm record's pieces are hashed before they are written): an answer up to
 * `maxAgeMs` old must change no decision's safety.
 */
export class SharedReads {
  private readonly reads = new Map<string, { at: number; result: Promise<unknown> }>();

  constructor(
    private readonly maxAgeMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  read<T>(key: string, read: () => Promise<T>): Promise<T> {
    const now = this.now();
    const shared = this.reads.get(key);
    if (shared && now - shared.at < this.maxAgeMs) return shared.result as Promise<T>;
    const result = read();
    this.reads.set(key, { at: now, result });
    // Forget what expired, so that keys of copies long over do not pile up.
    if (this.reads.size > 256)
      for (const [k, r] of this.reads) if (now - r.at >= this.maxAgeMs) this.reads.delete(k);
    return result;
  }
}
