import { describe, expect, it } from 'vitest';
import { Fanout } from './fanout';
import type { FanoutConfig, FanoutNodeInput } from './fanout-input';

const config: FanoutConfig = { pieceCount: 4, maxFetchesPerDestination: 2, seed: 1 };
const node = (over: Partial<FanoutNodeInput> = {}): FanoutNodeInput => ({
  id: 'a',
  complete: false,
  destination: true,
  readSlots: 4,
  readBps: 100,
  writeBps: 100,
  ...over,
});

describe('fan-out input', () => {
  it.each<[string, Partial<FanoutConfig>, FanoutNodeInput[], string]>([
    ['no piece', { pieceCount: 0 }, [node()], 'pieceCount: must be a whole number from 1 to 65535'],
    [
      'too many pieces',
      { pieceCount: 65_536 },
      [node()],
      'pieceCount: must be a whole number from 1 to 65535',
    ],
    [
      'a fractional fetch bound',
      { maxFetchesPerDestination: 1.5 },
      [node()],
      'maxFetchesPerDestination: must be',
    ],
    ['a negative seed', { seed: -1 }, [node()], 'seed: must be a whole number'],
    ['no node', {}, [], 'nodes: must list at least one node'],
    ['an empty id', {}, [node({ id: '' })], 'nodes[0].id: must be a non-empty string'],
    ['a duplicate id', {}, [node(), node()], 'nodes[1].id: duplicate id a'],
    ['no read slot', {}, [node({ readSlots: 0 })], 'nodes[0].readSlots: must be a whole number from 1'],
    ['a zero read cap', {}, [node({ readBps: 0 })], 'nodes[0].readBps: must be a positive finite number'],
    ['an infinite write cap', {}, [node({ writeBps: Infinity })], 'nodes[0].writeBps: must be a positive'],
    [
      'a piece out of range',
      {},
      [node({ pieces: [4] })],
      'nodes[0].pieces: must be a whole number from 0 to 3',
    ],
    ['a piece twice', {}, [node({ pieces: [1, 1] })], 'nodes[0].pieces: piece 1 listed twice'],
    [
      'a non-boolean complete',
      {},
      [node({ complete: 'yes' as unknown as boolean })],
      'nodes[0].complete: must be',
    ],
  ])('refuses %s', (_, over, nodes, message) => {
    expect(() => new Fanout({ ...config, ...over }, nodes)).toThrow(message);
  });

  it('takes a valid fan-out, a resumed partial copy counted as holding its pieces', () => {
    const fanout = new Fanout(config, [node({ id: 's', complete: true }), node({ id: 'd', pieces: [0, 2] })]);
    expect(Array.from(fanout.availability)).toEqual([2, 1, 2, 1]);
    expect(fanout.nodes[1]!.missingCount).toBe(2);
  });
});
