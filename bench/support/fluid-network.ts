/*
 * A discrete-event simulation of a fan-out's bytes, for bench/fanout-simulation.ts: a simulated clock and
 * per-node bandwidth, driving the scheduler of @app/fanout (the same Fanout and chooseFetch the copies are
 * to use). Model: a piece in flight moves at min(its source's read cap / the reads that source serves,
 * its destination's write cap / the fetches that destination runs) — the fair share at each end, not
 * redistributed when one end leaves the other's share unused (so it is pessimistic). An event is the end of
 * one piece; at each event the rates of the pieces in flight at the nodes whose counts changed are
 * recomputed (progress kept), and the scheduler is offered the free slots.
 */
import type { Fanout, Fetch } from '@app/fanout';

interface Transfer {
  fetch: Fetch;
  remaining: number;
  rate: number;
  last: number;
  version: number;
}

export interface FluidRun {
  /** Seconds at which each node completed (NaN: not a destination, or not done). */
  finishSeconds: Float64Array;
  pieceEvents: number;
  wallMs: number;
}

/**
 * A binary min-heap of (time, item, version) in parallel arrays: an entry whose version is no longer its
 * item's is stale and skipped on pop (an item re-pushed with a new time bumps its version).
 */
export class EventHeap<T extends { version: number }> {
  private times: number[] = [];
  private items: T[] = [];
  private versions: number[] = [];

  get size(): number {
    return this.times.length;
  }

  push(time: number, item: T): void {
    let i = this.times.length;
    this.times.push(time);
    this.items.push(item);
    this.versions.push(item.version);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.times[parent]! <= time) break;
      this.move(parent, i);
      i = parent;
    }
    this.times[i] = time;
    this.items[i] = item;
    this.versions[i] = item.version;
  }

  /** The earliest live entry, or undefined when none is left. */
  pop(): { time: number; item: T } | undefined {
    while (this.times.length > 0) {
      const time = this.times[0]!;
      const item = this.items[0]!;
      const version = this.versions[0]!;
      const lastTime = this.times.pop()!;
      const lastItem = this.items.pop()!;
      const lastVersion = this.versions.pop()!;
      if (this.times.length > 0) this.siftDown(lastTime, lastItem, lastVersion);
      if (item.version === version) return { time, item };
    }
    return undefined;
  }

  private siftDown(time: number, item: T, version: number): void {
    const n = this.times.length;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && this.times[child + 1]! < this.times[child]!) child++;
      if (this.times[child]! >= time) break;
      this.move(child, i);
      i = child;
    }
    this.times[i] = time;
    this.items[i] = item;
    this.versions[i] = version;
  }

  private move(from: number, to: number): void {
    this.times[to] = this.times[from]!;
    this.items[to] = this.items[from]!;
    this.versions[to] = this.versions[from]!;
  }
}

/** Runs the fan-out to its end; throws if it stalls (a destination left with nothing in flight: starvation). */
export function runFluid(fanout: Fanout, pieceBytes: number, assignBudget = Infinity): FluidRun {
  const wallStart = performance.now();
  const nodes = fanout.nodes;
  const finishSeconds = new Float64Array(nodes.length).fill(NaN);
  const transfers = new Map<Fetch, Transfer>();
  const heap = new EventHeap<Transfer>();
  const touched = new Set<number>();
  let now = 0;
  let pieceEvents = 0;

  const rate = (f: Fetch): number => {
    const src = nodes[f.source]!;
    const dst = nodes[f.destination]!;
    return Math.min(src.readBps / src.serving.length, dst.writeBps / dst.fetching.length);
  };
  // A piece whose rate did not change keeps its heap entry (progress is linear between changes).
  const update = (t: Transfer): void => {
    const r = rate(t.fetch);
    if (r === t.rate) return;
    t.remaining -= t.rate * (now - t.last);
    t.last = now;
    t.rate = r;
    t.version++;
    heap.push(now + Math.max(0, t.remaining) / t.rate, t);
  };
  const startAssigned = (budget = assignBudget): void => {
    for (const fetch of fanout.assign(budget)) {
      transfers.set(fetch, { fetch, remaining: pieceBytes, rate: 0, last: now, version: 0 });
      touched.add(fetch.source).add(fetch.destination);
    }
    for (const n of touched) {
      for (const f of nodes[n]!.serving) update(transfers.get(f)!);
      for (const f of nodes[n]!.fetching) update(transfers.get(f)!);
    }
    touched.clear();
  };

  startAssigned();
  for (;;) {
    let next = heap.pop();
    if (next === undefined) {
      // Nothing in flight: offer every waiting destination a turn before calling it a stall.
      startAssigned(Infinity);
      next = heap.pop();
      if (next === undefined) break;
    }
    now = next.time;
    const { fetch } = next.item;
    transfers.delete(fetch);
    pieceEvents++;
    if (fanout.verified(fetch).destinationComplete) finishSeconds[fetch.destination] = now;
    touched.add(fetch.source).add(fetch.destination);
    startAssigned();
  }
  if (!fanout.done)
    throw new Error(`the fan-out stalled at ${now.toFixed(3)} s with destinations unfinished`);
  return { finishSeconds, pieceEvents, wallMs: performance.now() - wallStart };
}
