/** What the look needs of a holder (piece-copy.ts's PieceHolder): its node, and its record when partial. */
interface LookHolder {
  node: string;
  partial?: { refresh: () => Promise<boolean> };
}

/** What the look needs of a swarm copy's options (piece-copy.ts's SwarmOptions). */
interface LookOptions<H> {
  everyMs: number;
  discover: (wanted?: (index: number) => boolean) => Promise<H[]>;
}

/**
 * A swarm copy's look, every `everyMs` while it is active: re-reads the records of the copies in progress
 * it reads from (one gone or stale is dropped), finds new ones (started as holders; a node dropped once
 * stays out), then wakes the holders waiting for pieces. On a timer, not on every piece: each look costs
 * a listing and a few small reads on the shared file system.
 */
export async function lookForPieces<H extends LookHolder>(
  swarm: LookOptions<H>,
  known: Set<string>,
  partials: H[],
  copy: {
    active: () => boolean;
    start: (holder: H) => void;
    drop: (holder: H) => void;
    dropped: (node: string) => boolean;
    changed: () => void;
    finished: () => Promise<void>;
    wanted?: (index: number) => boolean;
  },
): Promise<void> {
  while (copy.active()) {
    await nextLook(swarm.everyMs, copy);
    if (!copy.active()) return;
    await Promise.all(
      partials
        .filter((h) => !copy.dropped(h.node))
        .map(async (holder) => {
          if (!(await holder.partial!.refresh().catch(() => false))) copy.drop(holder);
        }),
    );
    const found = await swarm.discover(copy.wanted).catch(() => [] as H[]);
    for (const holder of found)
      if (!known.has(holder.node)) {
        known.add(holder.node);
        if (holder.partial) partials.push(holder);
        copy.start(holder);
      }
    copy.changed();
  }
}

/** Waits `ms`; woken by every piece event too, to leave at once when the copy ends. */
async function nextLook(ms: number, copy: { active: () => boolean; finished: () => Promise<void> }) {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    const until = Date.now() + ms;
    const wait = (): void =>
      void copy.finished().then(() => {
        if (!copy.active()) {
          clearTimeout(timer);
          resolve();
        } else if (Date.now() < until) wait();
      });
    wait();
  });
}
