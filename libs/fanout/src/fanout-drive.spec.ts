/*
 * The scheduler driven to the end with faults: every destination finishes (starvation freedom), no fetch is
 * ever started from a node not holding its piece verified, verified progress is never lost; and its one
 * decision is complete for a destination with nothing in flight (against a brute-force search).
 */
import { describe, expect, it } from 'vitest';
import { chooseFetch, mix } from './choose-fetch';
import type { Fanout } from './fanout';
import { at, fanoutOf } from './fanout.fixture';
import { PIECE_MISSING, PIECE_VERIFIED, type Fetch } from './fanout-view';

/** A seeded random number in [0, 1). */
function random(seed: number): () => number {
  let n = 0;
  return () => mix(seed, n++, 0x5bd1e995) / 2 ** 32;
}

interface Drive {
  nodes: number;
  pieces: number;
  readSlots: number;
  maxFetches: number;
  /** Chances per step: a piece fails verification, a partial holder is lost (back some steps later). */
  failure: number;
  loss: number;
  /** Turns per assign (Infinity: a whole round of the line). */
  budget: number;
  /** Some destinations capped below others. */
  slowEvery?: number;
}

function drive(seed: number, d: Drive): { steps: number; fanout: Fanout } {
  const rnd = random(seed);
  const fanout = fanoutOf(
    [
      at('s', { readSlots: d.readSlots }),
      ...Array.from({ length: d.nodes }, (_, i) =>
        at(`d${i}`, { readSlots: d.readSlots, readBps: d.slowEvery && i % d.slowEvery === 0 ? 10 : 100 }),
      ),
    ],
    d.pieces,
    d.maxFetches,
    seed,
  );
  const inFlight: Fetch[] = [];
  const lostUntil = new Map<number, number>();
  const held = fanout.nodes.map((n) => n.heldCount);
  const bound = 20 * (d.nodes + 1) * d.pieces + 1000;
  let steps = 0;
  const drop = (cancelled: Fetch[]) => {
    for (const f of cancelled) inFlight.splice(inFlight.indexOf(f), 1);
  };
  while (!fanout.done) {
    if (++steps > bound) throw new Error(`not done after ${bound} steps`);
    for (const [node, until] of lostUntil)
      if (until <= steps) {
        fanout.restore(node);
        lostUntil.delete(node);
      }
    for (const f of fanout.assign(d.budget)) {
      const source = fanout.nodes[f.source]!;
      expect(source.lost).toBe(false);
      expect(source.pieces[f.piece]).toBe(PIECE_VERIFIED);
      inFlight.push(f);
    }
    if (inFlight.length === 0) {
      // Nothing in flight and nothing started: only a wait for a lost node to come back is allowed.
      expect(lostUntil.size).toBeGreaterThan(0);
      continue;
    }
    const f = inFlight.splice(Math.floor(rnd() * inFlight.length), 1)[0]!;
    if (rnd() < d.failure && !fanout.nodes[f.source]!.complete) {
      const end = fanout.failed(f);
      drop(end.cancelled);
      lostUntil.set(f.source, steps + 1 + Math.floor(rnd() * 50));
    } else fanout.verified(f);
    if (rnd() < d.loss) {
      const victim = 1 + Math.floor(rnd() * d.nodes);
      if (!fanout.nodes[victim]!.lost && !fanout.nodes[victim]!.complete) {
        drop(fanout.lose(victim));
        lostUntil.set(victim, steps + 1 + Math.floor(rnd() * 50));
      }
    }
    fanout.nodes.forEach((n, i) => {
      expect(n.heldCount).toBeGreaterThanOrEqual(held[i]!);
      held[i] = n.heldCount;
    });
  }
  return { steps, fanout };
}

describe('a fan-out driven to its end', () => {
  it.each<[string, Drive]>([
    [
      'pieces, no fault',
      { nodes: 12, pieces: 16, readSlots: 4, maxFetches: 4, failure: 0, loss: 0, budget: Infinity },
    ],
    [
      'one read slot per node',
      { nodes: 12, pieces: 16, readSlots: 1, maxFetches: 4, failure: 0, loss: 0, budget: Infinity },
    ],
    [
      'one fetch per destination',
      { nodes: 12, pieces: 16, readSlots: 4, maxFetches: 1, failure: 0, loss: 0, budget: Infinity },
    ],
    [
      'whole copies (one piece)',
      { nodes: 12, pieces: 1, readSlots: 4, maxFetches: 1, failure: 0, loss: 0, budget: Infinity },
    ],
    [
      'two turns per assign',
      { nodes: 30, pieces: 24, readSlots: 2, maxFetches: 4, failure: 0, loss: 0, budget: 2 },
    ],
    [
      'failed pieces',
      { nodes: 12, pieces: 16, readSlots: 4, maxFetches: 4, failure: 0.05, loss: 0, budget: Infinity },
    ],
    [
      'lost holders',
      { nodes: 12, pieces: 16, readSlots: 4, maxFetches: 4, failure: 0, loss: 0.05, budget: Infinity },
    ],
    [
      'failures, losses, slow holders, one turn per assign',
      {
        nodes: 20,
        pieces: 12,
        readSlots: 2,
        maxFetches: 3,
        failure: 0.03,
        loss: 0.03,
        budget: 1,
        slowEvery: 3,
      },
    ],
  ])('every destination finishes: %s', (_, d) => {
    for (const seed of [1, 2, 3]) {
      const { fanout } = drive(seed, d);
      expect(fanout.nodes.every((n) => n.complete)).toBe(true);
    }
  });

  it('a destination with nothing in flight waits only when no free holder has a piece it lacks (brute force)', () => {
    let checked = 0;
    let waits = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const rnd = random(seed);
      // Up to 40 pieces and 10 destinations: more than the probes look at (PIECE_PROBES, HOLDER_PROBES).
      const pieces = 1 + Math.floor(rnd() * 40);
      const nodes = [
        at('s', { readSlots: 1 }),
        ...Array.from({ length: 10 }, (_, i) =>
          at(`d${i}`, {
            readSlots: 1 + Math.floor(rnd() * 2),
            pieces: Array.from({ length: pieces - 1 }, (_, p) => p).filter(() => rnd() < 0.15),
          }),
        ),
      ];
      const fanout = fanoutOf(nodes, pieces, 2, seed);
      // Busy some read slots at random, and lose a node now and then.
      for (let k = 0; k < 12; k++) {
        const candidate = chooseFetch(fanout, 1 + Math.floor(rnd() * 10));
        if (candidate && rnd() < 0.7) fanout.start(candidate);
      }
      if (rnd() < 0.3) fanout.lose(Math.floor(rnd() * 11));
      fanout.nodes.forEach((dst, d) => {
        if (!dst.destination || dst.complete || dst.lost || dst.fetching.length > 0) return;
        const feasible = fanout.nodes.some(
          (h, i) =>
            i !== d &&
            !h.lost &&
            h.serving.length < h.readSlots &&
            Array.from({ length: pieces }, (_, p) => p).some(
              (p) => h.pieces[p] === PIECE_VERIFIED && dst.pieces[p] === PIECE_MISSING,
            ),
        );
        const choice = chooseFetch(fanout, d);
        expect(choice !== undefined).toBe(feasible);
        checked++;
        if (!feasible) waits++;
      });
    }
    expect(checked).toBeGreaterThan(300);
    expect(waits).toBeGreaterThan(10);
  });
});
