import { describe, expect, it } from 'vitest';
import { chooseFetch } from './choose-fetch';
import type { Fanout } from './fanout';
import { at, fanoutOf, ix } from './fanout.fixture';
import type { FanoutNodeInput } from './fanout-input';

/** A fan-out, then fetches started as [destination, source, piece] by id, then the decision for `who`. */
interface Case {
  nodes: FanoutNodeInput[];
  inFlight?: Array<[string, string, number]>;
  lost?: string[];
  pieces?: number;
  maxFetches?: number;
  who: string;
  /** Expected source id (undefined: no fetch), and the pieces it may pick. */
  source: string | undefined;
  piece?: number[];
}

function decide(c: Case) {
  const fanout: Fanout = fanoutOf(c.nodes, c.pieces ?? 4, c.maxFetches ?? 4);
  for (const [d, s, piece] of c.inFlight ?? [])
    fanout.start({ destination: ix(fanout, d), source: ix(fanout, s), piece });
  for (const id of c.lost ?? []) fanout.lose(ix(fanout, id));
  const fetch = chooseFetch(fanout, ix(fanout, c.who));
  return { fanout, fetch, source: fetch && fanout.nodes[fetch.source]!.id };
}

describe('chooseFetch', () => {
  it.each<[string, Case]>([
    [
      'reads from the one complete source',
      { nodes: [at('s'), at('d1')], who: 'd1', source: 's', piece: [0, 1, 2, 3] },
    ],
    [
      'prefers a partial holder to the complete source',
      { nodes: [at('s'), at('d1'), at('d2', { pieces: [2] })], who: 'd1', source: 'd2', piece: [2] },
    ],
    [
      'takes the source when the partial holder has no free read slot',
      {
        nodes: [at('s'), at('d1'), at('d2', { pieces: [2], readSlots: 1 }), at('d3')],
        inFlight: [['d3', 'd2', 2]],
        who: 'd1',
        source: 's',
      },
    ],
    [
      'takes the source when the partial holder holds nothing the destination lacks',
      {
        nodes: [at('s'), at('d1', { pieces: [2] }), at('d2', { pieces: [2] })],
        who: 'd1',
        source: 's',
        piece: [0, 1, 3],
      },
    ],
    [
      'never reads a piece its holder has only in flight',
      {
        nodes: [at('s', { readSlots: 1 }), at('d1'), at('d2', { pieces: [1] }), at('d3')],
        inFlight: [['d2', 's', 0]],
        who: 'd1',
        source: 'd2',
        piece: [1],
      },
    ],
    [
      'waits when the only holder of what it lacks has that piece only in flight',
      {
        nodes: [at('s', { readSlots: 1 }), at('d1', { pieces: [1] }), at('d2', { pieces: [1] })],
        inFlight: [['d2', 's', 0]],
        pieces: 2,
        who: 'd1',
        source: undefined,
      },
    ],
    [
      'never reads from a lost holder',
      { nodes: [at('s'), at('d1'), at('d2', { pieces: [0, 1, 2] })], lost: ['d2'], who: 'd1', source: 's' },
    ],
    [
      'waits when every holder is lost',
      { nodes: [at('s'), at('d1')], lost: ['s'], who: 'd1', source: undefined },
    ],
    [
      'never reads from itself',
      { nodes: [at('d1', { pieces: [0] })], pieces: 2, who: 'd1', source: undefined },
    ],
    [
      'picks the rarest piece the holder has',
      {
        nodes: [
          at('s'),
          at('d1'),
          at('d2', { pieces: [0, 1] }),
          at('d3', { pieces: [0] }),
          at('d4', { pieces: [0] }),
        ],
        pieces: 3,
        who: 'd1',
        source: 'd2',
        piece: [1],
      },
    ],
    [
      'does not fetch a piece it fetches already',
      {
        nodes: [at('s', { readBps: 50 }), at('d1')],
        inFlight: [['d1', 's', 0]],
        pieces: 2,
        who: 'd1',
        source: 's',
        piece: [1],
      },
    ],
    [
      'stops at its fetch bound',
      {
        nodes: [at('s', { readBps: 10 }), at('d1')],
        inFlight: [['d1', 's', 0]],
        maxFetches: 1,
        who: 'd1',
        source: undefined,
      },
    ],
    [
      'opens no second fetch when the first fills its write cap',
      { nodes: [at('s'), at('s2'), at('d1')], inFlight: [['d1', 's', 0]], who: 'd1', source: undefined },
    ],
    [
      'opens a second fetch, from another holder, when its source is slower than its write cap',
      {
        nodes: [at('s', { readBps: 50 }), at('s2', { readBps: 50 }), at('d1')],
        inFlight: [['d1', 's', 0]],
        who: 'd1',
        source: 's2',
      },
    ],
    [
      'takes the holder with the larger share of its read cap',
      {
        nodes: [at('s'), at('d1'), at('d2', { pieces: [1] }), at('d3', { pieces: [1] }), at('d4'), at('d5')],
        inFlight: [
          ['d4', 'd2', 1],
          ['d5', 'd2', 1],
        ],
        pieces: 2,
        who: 'd1',
        source: 'd3',
        piece: [1],
      },
    ],
    ['a complete node fetches nothing', { nodes: [at('s'), at('s2')], who: 's2', source: undefined }],
    [
      'a lost destination fetches nothing',
      { nodes: [at('s'), at('d1')], lost: ['d1'], who: 'd1', source: undefined },
    ],
  ])('%s', (_, c) => {
    const { fanout, fetch, source } = decide(c);
    expect(source).toBe(c.source);
    if (fetch === undefined) return;
    if (c.piece) expect(c.piece).toContain(fetch.piece);
    const holder = fanout.nodes[fetch.source]!;
    expect(holder.lost).toBe(false);
    expect(holder.pieces[fetch.piece]).toBe(2);
    expect(() => fanout.start(fetch)).not.toThrow();
  });

  it('gives the same decision for the same state and seed, another spread for another seed', () => {
    const nodes = [at('s'), ...Array.from({ length: 6 }, (_, i) => at(`d${i}`))];
    const pick = (seed: number) => {
      const fanout = fanoutOf(nodes, 64, 4, seed);
      return fanout.assign().map((f) => `${f.destination}:${f.piece}`);
    };
    expect(pick(1)).toEqual(pick(1));
    expect(pick(1)).not.toEqual(pick(2));
    expect(new Set(pick(1).map((p) => p.split(':')[1])).size).toBe(4); // four distinct pieces off the source
  });
});
