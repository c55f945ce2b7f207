import { describe, expect, it, vi } from 'vitest';
import {
  BACKGROUND_SCAN_CONCURRENCY,
  DEFAULT_HOLDER_INDEX_OPTIONS,
  ImageHolderIndex,
  SCAN_CONCURRENCY,
  SETTLE_MS,
} from './holder-index';

/**
 * A fake cache listing whose answers can be changed and delayed. A folder's signature follows its entries
 * (as a real folder's mtime does); `calls` counts every call through the seam, `listings` the readdirs.
 */
function fakeStore(initial: Record<string, string[]>) {
  const state = {
    nodes: { ...initial },
    scans: 0,
    gate: undefined as Promise<void> | undefined,
    calls: 0,
    listings: [] as string[],
    /** Signatures that stay as they are whatever the entries (a change within the mtime's second). */
    frozen: new Map<string, string>(),
  };
  const stamp = (name: string, entries: string[]) => state.frozen.get(name) ?? JSON.stringify(entries);
  return {
    state,
    store: {
      rootStamp: async () => {
        state.scans++;
        state.calls++;
        await state.gate;
        return stamp('/', Object.keys(state.nodes).sort());
      },
      imagesFolderStamp: async (node: string) => {
        state.calls++;
        const ids = state.nodes[node];
        return ids && stamp(node, ids);
      },
      listNodes: async () => {
        state.calls++;
        state.listings.push('/');
        return Object.keys(state.nodes).sort();
      },
      listImageIds: async (node: string) => {
        state.calls++;
        state.listings.push(node);
        return [...(state.nodes[node] ?? [])];
      },
    },
  };
}

/** An index whose misses rescan at most once a second, on the test's clock and sleep. */
function missIndex(
  store: ReturnType<typeof fakeStore>['store'],
  clock: { ms: number },
  sleep: (ms: number) => Promise<void>,
): ImageHolderIndex {
  return new ImageHolderIndex(store, { ttlMs: 60_000, missRescanMs: 1_000, now: () => clock.ms, sleep });
}

describe('ImageHolderIndex', () => {
  it('lists many node folders at once, so a scan over a network mount does not cost one round trip per node in a row', async () => {
    let inFlight = 0;
    let most = 0;
    const nodes = Array.from({ length: 100 }, (_, i) => `n${i}`);
    const index = new ImageHolderIndex({
      rootStamp: async () => 'root',
      imagesFolderStamp: async () => 'images',
      listNodes: async () => nodes,
      listImageIds: async (node: string) => {
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 1)); // a round trip
        inFlight--;
        return node === 'n42' ? ['img'] : [];
      },
    });
    expect([...(await index.holdersOf('img'))]).toEqual(['n42']);
    expect(most).toBeGreaterThanOrEqual(8);
    expect(index.view().lastScan).toMatchObject({ nodes: 100 });
  });

  it('scans once, then answers from memory; refreshes in the background after the TTL', async () => {
    const { state, store } = fakeStore({ a: ['img'], b: ['img', 'other'], c: [] });
    const index = new ImageHolderIndex(store, { ttlMs: 50, missRescanMs: 1_000 });
    expect([...(await index.holdersOf('img'))].sort()).toEqual(['a', 'b']);
    for (let i = 0; i < 100; i++) await index.holdersOf('img');
    expect(state.scans).toBe(1);
    state.nodes.c = ['img'];
    await new Promise((r) => setTimeout(r, 60));
    // Past the TTL: the answer in hand is used, a scan starts behind it.
    expect([...(await index.holdersOf('img'))].sort()).toEqual(['a', 'b']);
    await index.refresh();
    expect([...(await index.holdersOf('img'))].sort()).toEqual(['a', 'b', 'c']);
  });

  it('rescans after a miss at most once per missRescanMs: the misses in between share the next scan', async () => {
    const { state, store } = fakeStore({ a: [] });
    const clock = { ms: 0 };
    const sleepers: Array<() => void> = [];
    const sleep = () => new Promise<void>((resolve) => sleepers.push(resolve));
    const index = missIndex(store, clock, sleep);
    expect([...(await index.holdersAfterMiss('img'))]).toEqual([]);
    clock.ms += 10;
    state.nodes.a = ['img'];
    const misses = Array.from({ length: 10 }, () => index.holdersAfterMiss('img'));
    await vi.waitFor(() => expect(sleepers).toHaveLength(10));
    expect(state.scans).toBe(1);
    clock.ms += 990;
    for (const wake of sleepers) wake();
    for (const miss of misses) expect([...(await miss)]).toEqual(['a']);
    expect(state.scans).toBe(2);
  });

  it('a miss whose scan found CACHE_ROOT not the cell\'s folder is CACHE_UNAVAILABLE, not "nobody"', async () => {
    const { state, store } = fakeStore({ a: ['img'] });
    let problem: string | undefined = 'cell key gone (a dead mount)';
    const index = new ImageHolderIndex(store, {
      ttlMs: 60_000,
      missRescanMs: 0,
      rootCheck: async () => problem,
    });
    delete state.nodes.a; // the dead mount: an empty folder
    await expect(index.holdersAfterMiss('img')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' });
    await expect(index.confirmRoot('nothing seen')).rejects.toMatchObject({ code: 'CACHE_UNAVAILABLE' });
    problem = undefined;
    state.nodes.a = ['img'];
    expect([...(await index.holdersAfterMiss('img'))]).toEqual(['a']);
    await index.confirmRoot('nothing seen');
  });

  it('a miss within missRescanMs of the last miss scan waits for a scan that started after it', async () => {
    const { state, store } = fakeStore({ a: [] });
    const clock = { ms: 0 };
    const waited: number[] = [];
    const sleep = async (ms: number) => {
      waited.push(ms);
      clock.ms += ms;
    };
    const index = missIndex(store, clock, sleep);
    expect([...(await index.holdersAfterMiss('img'))]).toEqual([]);
    clock.ms += 10;
    state.nodes.a = ['img']; // published after that scan started
    expect([...(await index.holdersAfterMiss('img'))]).toEqual(['a']);
    expect(state.scans).toBe(2);
    expect(waited).toEqual([990]); // the spacing of miss scans is kept
  });

  it('a miss right after a background scan rescans: the image may have come since', async () => {
    const { state, store } = fakeStore({ a: [] });
    const index = new ImageHolderIndex(store, { ttlMs: 60_000, missRescanMs: 60_000 });
    await index.refresh(); // e.g. the scan at start
    state.nodes.a = ['img'];
    expect([...(await index.holdersAfterMiss('img'))]).toEqual(['a']);
    expect(state.scans).toBe(2);
  });

  it('keeps what it learned during a scan that listed the node before', async () => {
    const { state, store } = fakeStore({ a: ['img'], b: [] });
    const index = new ImageHolderIndex(store, { ttlMs: 60_000, missRescanMs: 60_000 });
    await index.refresh();
    let open!: () => void;
    state.gate = new Promise((r) => (open = r));
    const scanning = index.refresh();
    index.learn('b', 'img'); // published while the scan runs; the scan's listing does not show it
    index.forget('a', 'img');
    open();
    await scanning;
    expect([...(await index.holdersOf('img'))]).toEqual(['b']);
    expect(state.scans).toBe(2);
  });

  it('tells listeners about learned holders', async () => {
    const { store } = fakeStore({});
    const index = new ImageHolderIndex(store, { ttlMs: 1, missRescanMs: 1 });
    let told = 0;
    const off = index.onLearn(() => told++);
    index.learn('a', 'img');
    off();
    index.learn('b', 'img');
    expect(told).toBe(1);
  });
});

describe('ImageHolderIndex: a rescan costs what changed', () => {
  const NODES = Array.from({ length: 50 }, (_, i) => `n${i}`);
  /** An index over 50 nodes on a hand-moved clock, with its listings final (two scans SETTLE_MS apart). */
  async function settledIndex() {
    const { state, store } = fakeStore(Object.fromEntries(NODES.map((n) => [n, n === 'n7' ? ['img'] : []])));
    const clock = { ms: 0 };
    const index = new ImageHolderIndex(store, { ttlMs: 5_000, missRescanMs: 0, now: () => clock.ms });
    await index.refresh();
    expect(state.listings).toHaveLength(NODES.length + 1); // the first scan lists everything
    clock.ms += SETTLE_MS;
    await index.refresh(); // too soon after the signatures were seen: listed once more, now final
    state.listings.length = 0;
    state.calls = 0;
    return { state, index, clock };
  }

  it('a rescan with no change makes one stat per node (and of CACHE_ROOT) and no listing', async () => {
    const { state, index, clock } = await settledIndex();
    for (let i = 0; i < 3; i++) {
      clock.ms += 5_000;
      await index.refresh();
    }
    expect(state.listings).toEqual([]);
    expect(state.calls).toBe(3 * (NODES.length + 1));
    expect(index.view().lastScan).toMatchObject({ nodes: NODES.length, fsOps: NODES.length + 1, listed: 0 });
    expect([...(await index.holdersAfterMiss('img'))]).toEqual(['n7']);
  });

  it('a change in one node lists that node again, and only that one', async () => {
    const { state, index, clock } = await settledIndex();
    state.nodes.n3 = ['img'];
    state.nodes.n7 = [];
    clock.ms += 5_000;
    expect([...(await index.holdersAfterMiss('img'))]).toEqual(['n3']);
    expect(state.listings).toEqual(['n3', 'n7']);
    // A node added under CACHE_ROOT: the root is listed again, and the new node's folder.
    state.nodes.n99 = ['img'];
    state.listings.length = 0;
    clock.ms += 5_000;
    expect([...(await index.holdersAfterMiss('img'))].sort()).toEqual(['n3', 'n99']);
    expect(state.listings.sort()).toEqual(['/', 'n3', 'n7', 'n99']); // n3, n7: their second, final listing
  });

  it('an entry added within the same second as the listing (signature unchanged) is found by the next rescan', async () => {
    const { state, index, clock } = await settledIndex();
    state.nodes.n1 = ['a'];
    clock.ms += 5_000;
    await index.refresh(); // lists n1 right after its new signature was seen: not final
    expect(state.listings).toEqual(['n1']);
    // Another entry in the same whole second of mtime: the signature stays the one the listing was made under.
    state.frozen.set('n1', JSON.stringify(['a']));
    state.nodes.n1 = ['a', 'late'];
    clock.ms += 100;
    expect([...(await index.holdersAfterMiss('late'))]).toEqual(['n1']);
    expect(state.listings).toEqual(['n1', 'n1']);
    // Listed again SETTLE_MS after the signature was first seen: final, the next rescans only stat.
    clock.ms += SETTLE_MS;
    await index.refresh();
    state.listings.length = 0;
    clock.ms += 5_000;
    await index.refresh();
    expect(state.listings).toEqual([]);
  });

  it('a holder forgotten after a failed look (a mount dead for a moment) is listed again by the next scan', async () => {
    const { state, index, clock } = await settledIndex();
    // The look at n7's copy failed (its folder read as empty on a dead mount): forgotten. The mount made
    // again shows the same signature (FUSE inode numbers and whole-second mtimes), so only a listing made
    // because of the forget can find the image again.
    index.forget('n7', 'img');
    clock.ms += 5_000;
    expect([...(await index.holdersAfterMiss('img'))]).toEqual(['n7']);
    expect(state.listings).toEqual(['n7']);
  });

  it('forgets the images of a node whose folder went away', async () => {
    const { state, index, clock } = await settledIndex();
    delete state.nodes.n7;
    clock.ms += 5_000;
    expect([...(await index.holdersAfterMiss('img'))]).toEqual([]);
    expect(state.listings).toEqual(['/']);
  });

  it('start() builds the index before the first request, and lists once more to make the listings final', async () => {
    const { state, store } = fakeStore({ a: ['img'], b: [] });
    const index = new ImageHolderIndex(store, DEFAULT_HOLDER_INDEX_OPTIONS);
    index.start();
    await vi.waitFor(() => expect(index.scans).toBe(1));
    expect(state.listings.sort()).toEqual(['/', 'a', 'b']);
    await vi.waitFor(() => expect(index.scans).toBe(2), { timeout: SETTLE_MS + 2_000 });
    expect(state.listings).toHaveLength(6);
    await index.stop();
    expect([...(await index.holdersOf('img'))]).toEqual(['a']);
    expect(index.scans).toBe(2); // answered from the warm index, no scan of its own
  });
});

describe('ImageHolderIndex: a scan nobody waits for leaves the thread pool to requests', () => {
  const NODES = Array.from({ length: 200 }, (_, i) => `n${i}`);
  /**
   * A store whose stats take a round trip each, counting how many are in flight at once (`most`), and the
   * most during each scan (`byScan`, by the number of scans ended when the stat started).
   */
  function slowStore(scansEnded: () => number = () => 0) {
    const flight = { now: 0, most: 0, byScan: new Map<number, number>() };
    const store = {
      rootStamp: async () => 'root',
      imagesFolderStamp: async (node: string) => {
        flight.most = Math.max(flight.most, ++flight.now);
        const scan = scansEnded();
        flight.byScan.set(scan, Math.max(flight.byScan.get(scan) ?? 0, flight.now));
        await new Promise((r) => setTimeout(r, 1));
        flight.now--;
        return `images-${node}`;
      },
      listNodes: async () => NODES,
      listImageIds: async (node: string) => (node === 'n42' ? ['img'] : []),
    };
    return { flight, store };
  }

  it('the refresh after the TTL looks at BACKGROUND_SCAN_CONCURRENCY folders at once', async () => {
    const { flight, store } = slowStore();
    const clock = { ms: 0 };
    const index = new ImageHolderIndex(store, { ttlMs: 5_000, missRescanMs: 0, now: () => clock.ms });
    await index.holdersOf('img'); // the first lookup waits: SCAN_CONCURRENCY
    expect(flight.most).toBe(SCAN_CONCURRENCY);
    flight.most = 0;
    clock.ms += 6_000;
    expect([...(await index.holdersOf('img'))]).toEqual(['n42']); // answered at once, a scan behind it
    await vi.waitFor(() => expect(index.scans).toBe(2));
    expect(flight.most).toBe(BACKGROUND_SCAN_CONCURRENCY);
  });

  it('the warm-up at start looks at BACKGROUND_SCAN_CONCURRENCY folders at once', async () => {
    const { flight, store } = slowStore();
    const index = new ImageHolderIndex(store, DEFAULT_HOLDER_INDEX_OPTIONS);
    index.start();
    await vi.waitFor(() => expect(index.scans).toBe(1));
    await index.stop();
    expect(flight.most).toBe(BACKGROUND_SCAN_CONCURRENCY);
  });

  it('a miss during a background scan raises that scan to SCAN_CONCURRENCY', async () => {
    const seen: { index?: ImageHolderIndex } = {};
    const { flight, store } = slowStore(() => seen.index?.scans ?? 0);
    const clock = { ms: 0 };
    const index = new ImageHolderIndex(store, { ttlMs: 5_000, missRescanMs: 0, now: () => clock.ms });
    seen.index = index;
    await index.holdersOf('img');
    clock.ms += 6_000;
    await index.holdersOf('img'); // starts the background scan (the second)
    await vi.waitFor(() => expect(flight.byScan.get(1)).toBe(BACKGROUND_SCAN_CONCURRENCY));
    clock.ms += 1;
    expect([...(await index.holdersAfterMiss('img'))]).toEqual(['n42']);
    expect(index.scans).toBe(3); // the background scan, raised, then the miss's own
    expect(flight.byScan.get(1)).toBe(SCAN_CONCURRENCY);
    expect(flight.byScan.get(2)).toBe(SCAN_CONCURRENCY);
  });
});
