import { describe, expect, it } from 'vitest';
import { createPiecePlan, dropHolder, markReading, pieceDone } from './piece-plan';
import { type TurnInput, type TurnSwarm, pieceTurn } from './piece-turn';

const MiB = 1024 * 1024;

function swarm(over: Partial<TurnSwarm> = {}): TurnSwarm {
  return {
    choice: { rarity: () => 0, offset: 0 },
    seedOnly: () => false,
    perPieceSlots: true,
    expectedRate: 4 * MiB,
    writeBps: 16 * MiB,
    starved: false,
    ...over,
  };
}

function input(over: Partial<TurnInput> = {}): TurnInput {
  return {
    plan: createPiecePlan(4),
    holder: { node: 'source' },
    failed: false,
    inFlight: { count: 0, sum: 0 },
    swarm: swarm(),
    slotHeld: true,
    ...over,
  };
}

describe('a holder’s turn in a piece copy', () => {
  it('stops when the copy failed or is complete, or the holder was dropped', () => {
    expect(pieceTurn(input({ failed: true }))).toEqual({ kind: 'stop' });
    const done = createPiecePlan(2, 2);
    expect(pieceTurn(input({ plan: done }))).toEqual({ kind: 'stop' });
    const plan = createPiecePlan(2);
    dropHolder(plan, 'source', 'lock lost');
    expect(pieceTurn(input({ plan }))).toEqual({ kind: 'stop' });
  });

  it('waits for room while the counted rates of the reads in flight fill the write cap, and always admits a first read', () => {
    expect(pieceTurn(input({ inFlight: { count: 4, sum: 16 * MiB } }))).toEqual({ kind: 'wait-room' });
    expect(pieceTurn(input({ inFlight: { count: 3, sum: 12 * MiB } }))).toEqual({ kind: 'read', index: 0 });
    // One read counted at more than the cap: no second read, but the first was let in.
    expect(pieceTurn(input({ inFlight: { count: 1, sum: 20 * MiB } }))).toEqual({ kind: 'wait-room' });
    expect(
      pieceTurn(input({ inFlight: { count: 0, sum: 0 }, swarm: swarm({ expectedRate: 64 * MiB }) })),
    ).toEqual({ kind: 'read', index: 0 });
    // No cap on either side: no admission rule.
    const busy = { count: 9, sum: 99 * MiB };
    expect(pieceTurn(input({ inFlight: busy, swarm: swarm({ writeBps: 0 }) })).kind).toBe('read');
    expect(pieceTurn(input({ inFlight: busy, swarm: swarm({ expectedRate: 0 }) })).kind).toBe('read');
  });

  it('asks for a read slot of the holder’s node before choosing, when slots are per piece', () => {
    const plan = createPiecePlan(4);
    expect(pieceTurn(input({ plan, slotHeld: false }))).toEqual({ kind: 'take-slot' });
    expect(plan.status).toEqual(['missing', 'missing', 'missing', 'missing']); // nothing marked
    expect(pieceTurn(input({ slotHeld: false, swarm: swarm({ perPieceSlots: false }) })).kind).toBe('read');
    // Room comes before the slot: a copy at its cap takes no slot from others.
    const full = { count: 4, sum: 16 * MiB };
    expect(pieceTurn(input({ slotHeld: false, inFlight: full }))).toEqual({ kind: 'wait-room' });
  });

  it('reads from a copy in progress the rarest missing piece it has, from the destination’s offset', () => {
    const plan = createPiecePlan(6);
    pieceDone(plan, 3);
    const partial = { has: (i: number) => i !== 4 };
    const choice = { rarity: (i: number) => (i === 1 || i === 5 ? 1 : 2), offset: 2 };
    const turn = (p = plan) =>
      pieceTurn(input({ plan: p, holder: { node: 'peer', partial }, swarm: swarm({ choice }) }));
    expect(turn()).toEqual({ kind: 'read', index: 5 }); // rarity 1 from offset 2 on: 5 before 1
    markReading(plan, 5, 'peer');
    expect(turn()).toEqual({ kind: 'read', index: 1 });
    const left = createPiecePlan(6);
    for (const i of [0, 1, 2, 3, 5]) pieceDone(left, i);
    expect(turn(left)).toEqual({ kind: 'wait' }); // it lacks piece 4: wait for the next look
  });

  it('leaves to the copies in progress what they hold or read, unless this copy starved', () => {
    const plan = createPiecePlan(3);
    const seedOnly = () => true;
    expect(pieceTurn(input({ plan, swarm: swarm({ seedOnly }) }))).toEqual({ kind: 'wait' });
    const starved = swarm({ seedOnly, starved: true });
    expect(pieceTurn(input({ plan, swarm: starved }))).toEqual({ kind: 'read', index: 0 });
    // Starved but a read in flight: it is not idle, the source keeps seeding only.
    expect(pieceTurn(input({ plan, swarm: starved, inFlight: { count: 1, sum: MiB } }))).toEqual({
      kind: 'wait',
    });
    expect(pieceTurn(input({ plan, swarm: swarm({ seedOnly: (i) => i < 2 }) }))).toEqual({
      kind: 'read',
      index: 2,
    });
  });

  it('without a swarm: the lowest missing piece, no slot asked, and waits while another holder reads', () => {
    const plan = createPiecePlan(3, 1);
    const plain = () => pieceTurn(input({ plan, swarm: undefined, slotHeld: false }));
    expect(plain()).toEqual({ kind: 'read', index: 1 });
    markReading(plan, 1, 'a');
    markReading(plan, 2, 'b');
    expect(plain()).toEqual({ kind: 'wait' }); // a piece may come back from a holder that fails
    dropHolder(plan, 'b', 'read failed');
    expect(plain()).toEqual({ kind: 'read', index: 2 });
    pieceDone(plan, 1);
    markReading(plan, 2, 'a');
    pieceDone(plan, 2);
    expect(plain()).toEqual({ kind: 'stop' });
  });
});
