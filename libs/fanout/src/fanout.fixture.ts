import { Fanout } from './fanout';
import type { FanoutNodeInput } from './fanout-input';

/** Node shorthand for the specs: `s` complete source, `d…` destinations; caps 100 B/s and 4 read slots unless given. */
export function at(id: string, over: Partial<FanoutNodeInput> = {}): FanoutNodeInput {
  const complete = over.complete ?? id.startsWith('s');
  return { id, complete, destination: !complete, readSlots: 4, readBps: 100, writeBps: 100, ...over };
}

export function fanoutOf(
  nodes: FanoutNodeInput[],
  pieceCount = 4,
  maxFetchesPerDestination = 4,
  seed = 7,
): Fanout {
  return new Fanout({ pieceCount, maxFetchesPerDestination, seed }, nodes);
}

/** The index of a node by id. */
export function ix(fanout: Fanout, id: string): number {
  const i = fanout.nodes.findIndex((n) => n.id === id);
  if (i < 0) throw new Error(`no node ${id}`);
  return i;
}
