import { describe, expect, it } from 'vitest';
import { ImageHolderIndex } from './holder-index';

/** A fake cache listing whose answers can be changed and delayed. */
function fakeStore(initial: Record<string, string[]>) {
  const state = { nodes: { ...initial }, scans: 0, gate: undefined as Promise<void> | undefined };
  return {
    state,
    store: {
      listNodes: async () => {
        state.scans++;
        await state.gate;
        return Object.keys(state.nodes).sort();
      },
      listImageIds: async (node: string) => [...(state.nodes[node] ?? [])],
    },
  };
}

describe('ImageHolderIndex', () => {
  it('lists many node folders at once, so a scan over a network mount does not cost one round trip per node in a row', async () => {
    let inFlight = 0;
    let most = 0;
    const nodes = Array.from({ length: 100 }, (_, i) => `n${i}`);
    const index = new ImageHolderIndex({
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

  it('rescans after a miss at most once per missRescanMs', async () => {
    const { state, store } = fakeStore({ a: [] });
    const index = new ImageHolderIndex(store, { ttlMs: 60_000, missRescanMs: 60_000 });
    expect([...(await index.holdersAfterMiss('img'))]).toEqual([]);
    state.nodes.a = ['img'];
    for (let i = 0; i < 10; i++) expect([...(await index.holdersAfterMiss('img'))]).toEqual([]);
    expect(state.scans).toBe(1);
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
